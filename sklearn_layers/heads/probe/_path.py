"""Fitting a linear probe over several splits and penalties, sharing the work."""

# SPDX-License-Identifier: BSD-3-Clause

import time

import numpy as np
from sklearn import get_config
from sklearn.base import clone

from ...utils._compat import validate_data
from ._linear_probe import LinearProbeClassifier, _initial_point, product_threads
from ._preconditioners import Diagonal, EigenWhitening
from ._solver import Problems, Rows, moments, solve, standardize
from .._validation import check_sample_weight


def linear_probe_path(estimator, X, y, *, splits, Cs=None, sample_weight=None):
    """Fit a :class:`LinearProbeClassifier` on every (split, C), sharing work.

    The fits of a layer sweep or of a search over `C` all see the same
    features. This function stores one standardised copy of `X` for all of
    them (each fit's own standardisation, by its training rows' statistics,
    is folded into its coefficients), decomposes one whitening (of the
    covariance of all rows of `X`) for all of them, solves the splits of one
    `C` together (one matrix product per iteration serves them all), and
    starts each split's fit at the next `C` from its solution at the
    previous one (values of `C` in increasing order). Each fit converges to
    the optimum it would reach alone, by its own training rows: the shared
    whitening and the warm starts only shape the solver's path (see the
    Notes of :class:`LinearProbeClassifier`).

    Parameters
    ----------
    estimator : LinearProbeClassifier
        Its parameters (other than `C` when `Cs` is given) are used for
        every fit; it is not modified.

    X : array-like of shape (n_samples, n_features)
        Features.

    y : array-like of shape (n_samples,)
        Target labels.

    splits : iterable of (train, test) pairs
        Index arrays, as yielded by a cross-validator's ``split``; only the
        training indices are used. ``[(np.arange(n_samples), [])]`` fits on
        all rows.

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
    template = clone(estimator)
    template._validate_params()
    X, y = validate_data(template, X, y, dtype=[np.float64, np.float32], order="C")
    Cs = _check_Cs(estimator.C if Cs is None else Cs)
    sample_weight = check_sample_weight(sample_weight, X.shape[0])
    start = time.perf_counter()
    with product_threads(estimator.n_threads):
        problems = _split_problems(template, X, y, splits, sample_weight, Cs)
        base_mean, base_scale, variances = moments(
            X, np.ones(X.shape[0]), scale=template.standardize
        )
        rows = Rows(standardize(X, base_mean, base_scale), template._device())
        family = (
            EigenWhitening(rows.covariance(np.ones(X.shape[0])))
            if template._whitens(X.shape[1])
            else Diagonal(variances)
        )
        fits, latest = [], {}
        for group in _batches(problems, X.shape[0]):
            group_fits = _solve_batch(
                template, rows, y, family, group, base_mean, base_scale, latest
            )
            latest.update((fit["split"], fit["estimator"]) for fit in group_fits)
            fits += group_fits
    elapsed = time.perf_counter() - start
    for fit in fits:
        fit["fit_time"] = elapsed / len(fits)
    fits.sort(key=lambda fit: (fit["split"], fit["C"]))
    return fits


def _split_problems(template, X, y, splits, sample_weight, Cs):
    """One problem per (split, C): classes, row weights and standardisation."""
    problems = []
    for position, (train, _) in enumerate(splits):
        train = np.asarray(train)
        classes, _, train_weights = template._labels_and_weights(
            y[train], sample_weight[train]
        )
        weights = np.zeros(X.shape[0])
        weights[train] = train_weights
        mean, scale, _ = moments(X[train], train_weights, scale=template.standardize)
        for C in Cs:
            problems.append(
                {"split": position, "C": C, "classes": classes, "weights": weights,
                 "mean": mean, "scale": scale}
            )
    return problems


def _batches(problems, n_samples):
    """Problems with the same classes, in batches whose scores fit in memory."""
    groups = {}
    for problem in problems:
        key = (problem["C"], tuple(problem["classes"].tolist()))
        groups.setdefault(key, []).append(problem)
    for group in groups.values():
        n_outputs = 1 if len(group[0]["classes"]) == 2 else len(group[0]["classes"])
        # scores, residuals and a few temporaries of shape (n_samples, n_outputs)
        per_problem = 6 * n_samples * n_outputs * 8
        size = max(1, int(get_config()["working_memory"] * 2**20 // per_problem))
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _solve_batch(template, rows, y, family, group, base_mean, base_scale, latest):
    """Solve one batch of problems together; one fitted clone per problem."""
    classes = group[0]["classes"]
    # rows of a class outside `classes` have weight 0 in every problem here
    y_ind = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    problems = Problems(
        rows,
        y_ind,
        len(classes),
        np.stack([problem["weights"] for problem in group], axis=1),
        np.array([problem["C"] for problem in group]),
        np.stack([problem["mean"] for problem in group]),
        np.stack([problem["scale"] for problem in group]),
        base_mean,
        base_scale,
    )
    starts = [
        _initial_point(latest.get(problem["split"]), classes, problem["mean"],
                       problem["scale"])
        for problem in group
    ]
    W, b, n_iter, status, max_gradient = solve(
        problems,
        np.stack([W0 for W0, _ in starts]),
        np.stack([b0 for _, b0 in starts]),
        preconditioner=family,
        tol=template.tol,
        max_iter=template.max_iter,
    )
    fits = []
    for k, problem in enumerate(group):
        probe = clone(template).set_params(C=problem["C"])
        probe._set_solution(classes, W[k], b[k], problem["mean"], problem["scale"])
        probe._set_convergence(n_iter[k], status[k], max_gradient[k], rows.dtype)
        probe.n_features_in_ = template.n_features_in_
        if hasattr(template, "feature_names_in_"):
            probe.feature_names_in_ = template.feature_names_in_
        fits.append({"split": problem["split"], "C": problem["C"], "estimator": probe})
    return fits


def _check_Cs(Cs):
    values = np.atleast_1d(np.asarray(Cs, dtype=float))
    if values.ndim != 1 or values.size == 0 or not (values > 0).all():
        raise ValueError(
            f"Cs must be one or more positive numbers; got {Cs!r}."
        )
    return [float(C) for C in np.unique(values)]
