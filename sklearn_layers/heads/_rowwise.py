"""Row-wise normalisations shared by the heads: unit L2 norm and softmax."""

import numpy as np


def l2_normalize(X, out=None):
    """Divide each row by its L2 norm; rows of norm 0 stay 0.

    The norm is accumulated in float64 so that large float32 values do not
    overflow; the result keeps the dtype of ``X`` and may be written in
    place with ``out=X``.
    """
    # Not sklearn.preprocessing.normalize: it squares in the dtype of X (a
    # float32 row [2e38, 2e38] comes out as zeros), cannot write in place,
    # and took 1.0-2.3x this function's time (5,000 x 384 and 20,000 x 512,
    # float32 and float64; benchmarks/bench_head_helpers.py).
    norms = np.sqrt(np.einsum("ij,ij->i", X, X, dtype=np.float64))
    norms[norms == 0] = 1.0
    if out is None:
        out = np.empty_like(X)
    np.divide(X, norms[:, None].astype(X.dtype, copy=False), out=out)
    return out


def softmax(scores, temperature):
    """Row-wise softmax of ``scores / temperature``, stable for any scale."""
    # Not scipy.special.softmax(scores / temperature, axis=1): working in
    # place on one copy took 0.5-0.95x scipy's time (5,000 x 10 and 20,000 x
    # 100 scores; benchmarks/bench_head_helpers.py).
    z = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z
