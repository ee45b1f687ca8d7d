"""Fitting a linear probe over several splits and penalties, sharing the work."""

# SPDX-License-Identifier: BSD-3-Clause

import time

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_array

from ...utils._compat import validate_data, validate_parameter_constraints
from ...utils._device import resolve_device
from .._validation import check_sample_weight
from ._core import check_Cs, fit_path, product_threads
from ._linear_probe import LinearProbeClassifier, _solver_settings, set_solution


def linear_probe_path(estimator, X, y, *, splits, Cs=None, sample_weight=None):
    """Fit a :class:`LinearProbeClassifier` on every (split, C), sharing work.

    The fits of a layer sweep or of a search over `C` all see the same
    features. This function stores one standardised copy of `X` for all of
    them (each fit's own standardisation, by its training rows' statistics,
    is folded into its coefficients), factors one whitening covariance (of
    the rows, weighted by how many training sets hold them) for all of them,
    and solves every (split, C) together (one matrix product per iteration
    serves them all; the splits of one `C` share one whitening factor). When
    `working_memory` (scikit-learn's config) splits them into batches, the
    values of `C` go in increasing order and each split's fit starts from
    its solution at the previous `C`. Each fit converges to the optimum it
    would reach alone on ``X[train], y[train]``: the shared whitening and
    the starting points only shape the solver's path (see the Notes of
    :class:`LinearProbeClassifier`).
    ``LinearProbeClassifier.fit`` is this function with one split and one
    `C`.

    Parameters
    ----------
    estimator : LinearProbeClassifier
        Its parameters (other than `C` when `Cs` is given) are used for
        every fit; it is not modified. A subclass that overrides ``fit``
        gets its own ``fit`` on every (split, C), as a clone each.

    X : array-like of shape (n_samples, n_features)
        Features.

    y : array-like of shape (n_samples,)
        Target labels.

    splits : iterable of (train, test) pairs
        Index arrays, as yielded by a cross-validator's ``split``; only the
        training indices are used, and a repeated index counts as a repeated
        row (a bootstrap sample is fitted as ``X[train], y[train]``).
        ``[(np.arange(n_samples), [])]`` fits on all rows.

    Cs : array-like of float, default=None
        Values of `C`; ``None`` means ``[estimator.C]``.

    sample_weight : array-like of shape (n_samples,), default=None
        Weights of the samples (each fit takes its training rows' weights).

    Returns
    -------
    fits : list of dict
        One dict per (split, C), ordered by split then increasing `C`, with
        keys ``"split"`` (position in `splits`), ``"C"``, ``"estimator"``
        (a fitted clone of `estimator` with that `C`) and ``"fit_time"``
        (seconds: the fits are solved together, so each gets the path's
        time divided by the number of fits).

    See Also
    --------
    LinearProbeClassifier : The estimator fitted here.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.model_selection import StratifiedKFold
    >>> from sklearn_layers.heads import LinearProbeClassifier, linear_probe_path
    >>> X, y = load_iris(return_X_y=True)
    >>> splits = list(StratifiedKFold(3).split(X, y))
    >>> fits = linear_probe_path(LinearProbeClassifier(), X, y, splits=splits,
    ...                          Cs=[0.1, 1.0])
    >>> [(f["split"], f["C"]) for f in fits]
    [(0, 0.1), (0, 1.0), (1, 0.1), (1, 1.0), (2, 0.1), (2, 1.0)]
    >>> [round(f["estimator"].score(X[test], y[test]), 2)
    ...  for f, (_, test) in zip(fits[1::2], splits)]
    [0.98, 0.96, 0.94]
    """
    if not isinstance(estimator, LinearProbeClassifier):
        raise TypeError(
            "linear_probe_path fits a LinearProbeClassifier; got "
            f"{type(estimator).__name__}."
        )
    Cs = check_Cs(estimator.C if Cs is None else Cs)
    train_sets = [check_array(np.asarray(train), ensure_2d=False, ensure_min_samples=0,
                              dtype=None, input_name="train indices")
                  for train, _ in splits]
    if type(estimator).fit is not LinearProbeClassifier.fit:
        return _fit_each(estimator, X, y, train_sets, Cs, sample_weight)
    validate_parameter_constraints(
        LinearProbeClassifier._parameter_constraints,
        estimator.get_params(deep=False),
        caller_name=type(estimator).__name__,
    )
    template = clone(estimator)
    X, y = validate_data(template, X, y, dtype=[np.float64, np.float32], order="C")
    sample_weight = check_sample_weight(sample_weight, X.shape[0])
    start = time.perf_counter()
    with product_threads(estimator.n_threads):
        solutions, _ = fit_path(
            X, y, train_sets, Cs, sample_weight=sample_weight,
            device=resolve_device(estimator.device), name=type(estimator).__name__,
            **_solver_settings(estimator),
        )
    elapsed = time.perf_counter() - start
    fits = []
    for solution in solutions:
        probe = clone(template).set_params(C=solution["C"])
        set_solution(probe, solution, X.dtype)
        probe.n_features_in_ = template.n_features_in_
        if hasattr(template, "feature_names_in_"):
            probe.feature_names_in_ = template.feature_names_in_
        fits.append({"split": solution["split"], "C": solution["C"],
                     "estimator": probe, "fit_time": elapsed / len(solutions)})
    return fits


def _fit_each(estimator, X, y, train_sets, Cs, sample_weight):
    """A clone fitted by its own ``fit`` per (split, C), for subclasses that override it."""
    fits = []
    for position, train in enumerate(train_sets):
        for C in Cs:
            start = time.perf_counter()
            params = {} if sample_weight is None else {
                "sample_weight": np.asarray(sample_weight)[train]
            }
            probe = clone(estimator).set_params(C=C).fit(
                _rows(X, train), _rows(y, train), **params
            )
            fits.append({"split": position, "C": C, "estimator": probe,
                         "fit_time": time.perf_counter() - start})
    return fits


def _rows(data, index):
    """Rows `index` of an array or a DataFrame, by position."""
    return data.iloc[index] if hasattr(data, "iloc") else np.asarray(data)[index]
