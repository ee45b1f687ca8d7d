"""How many rows to process at once so that memory stays bounded."""

from sklearn import get_config
from sklearn.utils import gen_batches


def chunk_n_rows(row_bytes, working_memory=None, *, max_rows=None):
    """Rows whose temporaries fit in `working_memory` MiB: at least 1, at most `max_rows`.

    The rule of scikit-learn's ``pairwise_distances_chunked``:
    ``working_memory * 2**20 // row_bytes``; ``None`` reads
    ``sklearn.get_config()["working_memory"]``.

    Parameters
    ----------
    row_bytes : int
        Bytes of temporaries one row takes.
    working_memory : float or None, default=None
        MiB; must be positive.
    max_rows : int or None, default=None
        Upper bound (for example the number of rows there are).
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    if not working_memory > 0:
        raise ValueError(
            f"working_memory must be a positive number of MiB; got {working_memory!r}."
        )
    rows = max(1, int(working_memory * 2**20 // max(row_bytes, 1)))
    return rows if max_rows is None else max(1, min(rows, max_rows))


def row_chunks(n_rows, row_bytes, working_memory=None):
    """Slices covering ``range(n_rows)``, each within `working_memory` MiB."""
    return gen_batches(n_rows, chunk_n_rows(row_bytes, working_memory, max_rows=n_rows))
