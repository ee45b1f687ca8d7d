"""Small helpers shared by the heads (no estimator lives here)."""

from numbers import Real

import numpy as np
from sklearn import get_config
from sklearn.utils import check_array, gen_batches

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
    """Slices covering ``range(n_rows)``, each of about ``values`` entries."""
    return gen_batches(n_rows, max(1, values // max(1, n_cols)))


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


def chunk_n_rows(row_bytes, working_memory=None):
    """Rows that fit in `working_memory` MiB, at least 1.

    The rule of scikit-learn's ``pairwise_distances_chunked``:
    ``working_memory * 2**20 // row_bytes``; ``None`` reads
    ``sklearn.get_config()["working_memory"]``.
    """
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    return max(1, int(working_memory * 2**20 // row_bytes))


def check_sample_weight(sample_weight, n_samples):
    """``sample_weight`` as a float64 array of shape (n_samples,), checked.

    None means ones; a number means that weight for every sample. Weights
    must be finite and non-negative, with a positive sum.
    """
    if sample_weight is None:
        return np.ones(n_samples)
    if isinstance(sample_weight, Real):
        sample_weight = np.full(n_samples, float(sample_weight))
    weights = check_array(
        sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight"
    )
    if weights.shape != (n_samples,):
        raise ValueError(
            f"sample_weight must have shape ({n_samples},), one weight per "
            f"sample; got shape {weights.shape}."
        )
    if (weights < 0).any():
        raise ValueError(
            "sample_weight must be non-negative; got a minimum of "
            f"{weights.min()!r}."
        )
    if not weights.sum() > 0:
        raise ValueError(
            "sample_weight is all zero: at least one sample needs a positive "
            "weight."
        )
    return weights
