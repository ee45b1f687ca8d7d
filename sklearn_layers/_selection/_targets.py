"""Target checks shared by the layer-level classifiers."""

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d


def check_class_targets(y, owner):
    """``y`` as 1-D class labels with at least two classes.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    owner : str
        The estimator's name, for the error messages.

    Returns
    -------
    y : ndarray of shape (n_samples,)
    """
    if y is None:
        raise ValueError(f"{owner} requires y to be passed, but the target y is None.")
    y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y"), warn=True)
    check_classification_targets(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"{owner} needs at least 2 classes; got {len(classes)} class: {classes}.")
    return y
