"""Input checks and chunk sizes shared by the layer metrics."""

from numbers import Integral

import numpy as np
from sklearn import get_config
from sklearn.utils import check_random_state, resample
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d


def check_features(F, *, min_samples=2):
    """``F`` as a finite 2-D float array (float32 or float64, not copied if so)."""
    return check_array(
        F, dtype=[np.float64, np.float32], ensure_min_samples=min_samples, input_name="F"
    )


def check_labels(F, y):
    """``y`` as 1-D class labels, one per row of ``F``: ``(classes, codes)``."""
    y = column_or_1d(y, warn=True)
    check_consistent_length(F, y)
    check_classification_targets(y)
    return np.unique(y, return_inverse=True)


def check_positive_int(value, name, *, minimum=1):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return int(value)


def chunk_rows(row_bytes, n_rows, working_memory):
    """Rows per chunk so that one chunk takes about ``working_memory`` MiB."""
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    if not working_memory > 0:
        raise ValueError(f"working_memory must be a positive number of MiB; got "
                         f"{working_memory!r}.")
    return int(max(1, min(n_rows, working_memory * 2**20 // max(row_bytes, 1))))


def stratified_rows(n_samples, y, max_samples, random_state):
    """Sorted row indices: all rows, or ``max_samples`` of them (stratified by ``y``).

    ``y`` may be None (a plain random subset). The same call gives the same
    rows, so every layer of a table is measured on the same samples.
    """
    if max_samples is None or max_samples >= n_samples:
        return np.arange(n_samples)
    picked = resample(
        np.arange(n_samples), replace=False, n_samples=max_samples,
        random_state=check_random_state(random_state), stratify=y,
    )
    return np.sort(picked)
