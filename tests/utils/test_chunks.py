"""One chunk-size rule for the heads and the layer metrics."""

import pytest
from sklearn import config_context

from sklearn_layers.utils._chunks import chunk_n_rows, row_chunks


def test_rows_that_fit_in_working_memory():
    assert chunk_n_rows(1024, 1) == 1024  # 1 MiB of 1 KiB rows
    assert chunk_n_rows(10 * 2**20, 1) == 1  # at least one row
    assert chunk_n_rows(1024, 1, max_rows=10) == 10
    with config_context(working_memory=2):
        assert chunk_n_rows(1024) == 2048


@pytest.mark.parametrize("working_memory", [0, -1.0])
def test_non_positive_working_memory_is_a_value_error(working_memory):
    with pytest.raises(ValueError, match="working_memory"):
        chunk_n_rows(8, working_memory)


def test_row_chunks_cover_every_row_once():
    chunks = list(row_chunks(10, 2**20 // 3, working_memory=1))
    assert [(s.start, s.stop) for s in chunks] == [(0, 3), (3, 6), (6, 9), (9, 10)]
