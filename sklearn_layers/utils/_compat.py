"""The one place that touches scikit-learn's private helpers.

Parameter validation (``_fit_context``, the constraint classes and the
``validate_params`` decorator of public functions) is private in scikit-learn.
We reach ``_fit_context`` and ``validate_data`` through ``sklearn-compat`` (as
imbalanced-learn and scikit-lego do) and the constraint classes and
``validate_params`` from scikit-learn directly, here and nowhere else, so that
a change in scikit-learn's private API is fixed in one file.

The package's ``_fit_context`` also runs every ``fit`` inside the estimator's
thread budget (:func:`~sklearn_layers.utils._threads.thread_budget` of its
``n_threads``, or of the calling thread's torch count for estimators without
one), so that torch, BLAS and OpenMP share one count in every fit.
"""

import functools

from sklearn.utils import _safe_indexing  # noqa: F401
from sklearn.utils._param_validation import (  # noqa: F401
    HasMethods,
    Interval,
    RealNotInt,
    StrOptions,
    validate_parameter_constraints,
    validate_params,
)
from sklearn_compat.base import _fit_context as _sklearn_fit_context
from sklearn_compat.utils.validation import validate_data  # noqa: F401

from ._threads import is_thread_count, thread_budget


def _fit_context(*, prefer_skip_nested_validation):
    """scikit-learn's ``_fit_context``, inside the estimator's thread budget."""
    validated = _sklearn_fit_context(
        prefer_skip_nested_validation=prefer_skip_nested_validation
    )

    def decorator(fit_method):
        fit = validated(fit_method)

        @functools.wraps(fit_method)
        def wrapper(estimator, *args, **kwargs):
            n_threads = getattr(estimator, "n_threads", None)
            if not is_thread_count(n_threads):
                n_threads = None  # the fit's own validation names the problem
            with thread_budget(n_threads):
                return fit(estimator, *args, **kwargs)

        return wrapper

    return decorator


__all__ = [
    "HasMethods",
    "Interval",
    "RealNotInt",
    "StrOptions",
    "validate_params",
    "_fit_context",
    "_safe_indexing",
    "validate_data",
    "validate_parameter_constraints",
]
