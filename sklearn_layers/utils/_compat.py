"""The one place that touches scikit-learn's private helpers.

Parameter validation (``_fit_context``, the constraint classes and the
``validate_params`` decorator of public functions) is private in scikit-learn.
We reach ``_fit_context`` and ``validate_data`` through ``sklearn-compat`` (as
imbalanced-learn and scikit-lego do) and the constraint classes and
``validate_params`` from scikit-learn directly, here and nowhere else, so that
a change in scikit-learn's private API is fixed in one file.
"""

from sklearn.utils._param_validation import (  # noqa: F401
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_params,
)
from sklearn_compat.base import _fit_context  # noqa: F401
from sklearn_compat.utils.validation import validate_data  # noqa: F401

__all__ = [
    "HasMethods",
    "Interval",
    "RealNotInt",
    "StrOptions",
    "validate_params",
    "_fit_context",
    "validate_data",
]
