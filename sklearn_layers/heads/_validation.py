"""Input checks shared by the heads."""

from numbers import Real

import numpy as np
from sklearn.utils import check_array


def check_at_least_two_classes(classes, name):
    """Raise a ValueError naming the problem when fewer than two classes are given."""
    if len(classes) < 2:
        raise ValueError(
            f"{name} needs at least 2 classes in y; got {len(classes)} class "
            f"({np.asarray(classes).tolist()!r}). A classifier cannot learn "
            "from one class."
        )


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
