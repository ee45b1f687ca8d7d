"""Disk-cache entries: anything found at an entry's path is read safely or missed."""

import io
import os
import struct
import threading
import zipfile

import numpy as np
import pytest

from sklearn_layers._extraction._npz import read_entry, write_entry


def test_round_trip(tmp_path):
    entry = {"a": np.arange(5, dtype=np.float32), "b": np.ones(3, dtype=np.float32)}
    write_entry(tmp_path / "e.npz", entry)
    got = read_entry(tmp_path / "e.npz")
    assert got.keys() == entry.keys()
    for key in entry:
        np.testing.assert_array_equal(got[key], entry[key])


def test_missing_file_is_a_miss(tmp_path):
    assert read_entry(tmp_path / "nothing.npz") is None


def test_fifo_is_never_opened_for_a_blocking_read(tmp_path):
    fifo = tmp_path / "e.npz"
    os.mkfifo(fifo)
    result = []
    reader = threading.Thread(target=lambda: result.append(read_entry(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "reading a FIFO blocked"
    assert result == [None]


def test_directory_at_the_entry_path_is_a_miss(tmp_path):
    (tmp_path / "e.npz").mkdir()
    assert read_entry(tmp_path / "e.npz") is None


def test_plain_npy_is_a_miss(tmp_path):
    np.save(tmp_path / "e.npy", np.ones(4, dtype=np.float32))
    os.replace(tmp_path / "e.npy", tmp_path / "e.npz")
    assert read_entry(tmp_path / "e.npz") is None


def _npz_with_header(shape):
    """A tiny .npz whose member header claims ``shape`` but holds 8 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.ones(2, dtype=np.float32))
    header["shape"] = shape
    body = io.BytesIO()
    np.lib.format.write_array_header_1_0(body, header)
    body.write(np.ones(2, dtype=np.float32).tobytes())
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("row.npy", body.getvalue())
    return out.getvalue()


def test_header_claiming_petabytes_allocates_nothing(tmp_path):
    data = _npz_with_header((2**50,))
    assert len(data) < 400
    (tmp_path / "e.npz").write_bytes(data)
    assert read_entry(tmp_path / "e.npz") is None  # no MemoryError


def test_zip_directory_claiming_more_than_the_file_holds(tmp_path):
    data = bytearray(_npz_with_header((2,)))
    # patch the uncompressed size in the central directory to 1 PiB
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFF0)
    (tmp_path / "e.npz").write_bytes(bytes(data))
    assert read_entry(tmp_path / "e.npz") is None


@pytest.mark.parametrize(
    "value",
    [np.ones(3, dtype=np.float64), np.ones((2, 2), dtype=np.float32),
     np.array([1, 2], dtype=np.int32)],
)
def test_rows_of_another_dtype_or_shape_are_a_miss(tmp_path, value):
    np.savez(tmp_path / "e.npz", row=value)
    assert read_entry(tmp_path / "e.npz") is None


def test_pickled_objects_are_never_loaded(tmp_path):
    np.savez(tmp_path / "e.npz", row=np.array([object()], dtype=object))
    assert read_entry(tmp_path / "e.npz") is None
