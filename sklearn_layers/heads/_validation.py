"""Small helpers shared by the heads (no estimator lives here)."""

import numpy as np

# Rows of X processed at once are chosen so that one chunk holds about this many
# float64 values (8 MiB): memory stays bounded whatever the number of samples.
CHUNK_VALUES = 1 << 20


def check_at_least_two_classes(classes, name):
    """Raise a ValueError naming the problem when fewer than two classes are given."""
    if len(classes) < 2:
        raise ValueError(
            f"{name} needs at least 2 classes in y; got {len(classes)} class "
            f"({np.asarray(classes).tolist()!r}). A classifier cannot learn "
            "from one class."
        )


def row_chunks(n_rows, n_cols, values=CHUNK_VALUES):
    """Yield ``slice`` objects covering ``range(n_rows)`` in chunks of ~``values``."""
    step = max(1, values // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def l2_normalize(X, out=None):
    """Divide each row by its L2 norm; rows of norm 0 stay 0.

    The norm is accumulated in float64 so that large float32 values do not
    overflow; the result keeps the dtype of ``X``.
    """
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    norms[norms == 0] = 1.0
    if out is None:
        out = np.empty_like(X)
    np.divide(X, norms[:, None].astype(X.dtype, copy=False), out=out)
    return out


def softmax(scores, temperature):
    """Row-wise softmax of ``scores / temperature``, stable for any scale."""
    z = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def log_softmax(scores, temperature):
    """Row-wise log of :func:`softmax`, computed without taking ``log(0)``."""
    z = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z
