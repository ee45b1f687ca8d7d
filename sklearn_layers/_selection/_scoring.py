"""One scoring core: every (layer x estimator x split) of a layer search.

Features are extracted once, side by side (one block of columns per layer);
:func:`score_layers` then fits and scores clones of each estimator on each
layer's columns, for cross-validation splits and for held-out test sets,
in parallel over layers with joblib. :class:`IntermediateLayerClassifier` and
:func:`layer_sweep` both call it.
"""

import time
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone

from ._intervals import bootstrap_interval, fold_interval


@dataclass
class Splits:
    """Where each layer is scored.

    Attributes
    ----------
    cv : list of (train, test) index arrays, or None
        Cross-validation splits of the training rows (split name ``"cv"``).
    tests : dict of str -> (features, y)
        Held-out sets, scored by estimators fitted on all training rows.
    """

    cv: list = None
    tests: dict = field(default_factory=dict)

    def count(self):
        """How many fits and scores one (layer, estimator) pair takes."""
        return (len(self.cv) if self.cv else 0) + (1 if self.tests else 0)


def _fit_folds(estimator, F, y, folds):
    """``(fitted, fit_time)`` per fold.

    An estimator with a ``fit_splits(X, y, splits)`` method (the linear
    probe's: one standardised copy, one whitening, one product per iteration
    for every fold) fits its folds together; it promises the fits of
    ``clone(estimator).fit(X[train], y[train])``. Any other estimator is
    cloned and fitted per fold. No type is looked at: a probe inside a
    ``Pipeline`` is cloned and fitted as any pipeline is.
    """
    fit_splits = getattr(estimator, "fit_splits", None)
    if callable(fit_splits):
        start = time.perf_counter()
        fitted = fit_splits(F, y, folds)
        each = (time.perf_counter() - start) / max(len(fitted), 1)
        return [(model, each) for model in fitted]
    fitted = []
    for train, _ in folds:
        start = time.perf_counter()
        model = clone(estimator).fit(F[train], y[train])
        fitted.append((model, time.perf_counter() - start))
    return fitted


def _score_one(estimator, scorer, F, y, splits, n_bootstrap, random_state):
    """Every split of one estimator on one layer's features."""
    rows = []
    if splits.cv:
        scores, fit_times = [], []
        for (fitted, fit_time), (_, test) in zip(_fit_folds(estimator, F, y, splits.cv),
                                                 splits.cv):
            fit_times.append(fit_time)
            scores.append(float(scorer(fitted, F[test], y[test])))
        low, high = fold_interval(scores)
        rows.append(dict(split="cv", score=float(np.mean(scores)),
                         score_std=float(np.std(scores)), score_low=low, score_high=high,
                         fit_time=float(np.mean(fit_times)), scores=scores))
    if splits.tests:
        start = time.perf_counter()
        fitted = clone(estimator).fit(F, y)
        fit_time = time.perf_counter() - start
        for name, (X_test, y_test) in splits.tests.items():
            score = float(scorer(fitted, X_test, y_test))
            low, high = bootstrap_interval(scorer, fitted, X_test, y_test,
                                           n_bootstrap=n_bootstrap, random_state=random_state)
            rows.append(dict(split=name, score=score, score_std=0.0, score_low=low,
                             score_high=high, fit_time=fit_time, scores=[score]))
    return rows


def _score_layer(layer, index, F, y, estimators, scorers, splits, n_bootstrap,
                 random_state):
    rows = []
    for name, estimator in estimators.items():
        for row in _score_one(estimator, scorers[name], F, y, splits, n_bootstrap,
                              random_state):
            rows.append({"layer": layer, "layer_index": index, "head": name, **row})
    return rows


def score_layers(features, slices, y, estimators, scorers, splits, *, n_jobs=None,
                 n_bootstrap=0, random_state=None, progress=None):
    """Fit and score every estimator on every layer's columns.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
        All layers side by side.
    slices : dict of str -> slice
        Each layer's columns, in network order.
    y : ndarray of shape (n_samples,)
    estimators : dict of str -> estimator
        Cloned for every fit.
    scorers : dict of str -> callable
        One scorer per estimator name.
    splits : Splits
        Cross-validation splits and/or test sets; test-set features have the
        same column layout as ``features``.
    n_jobs : int, default=None
        Layers scored in parallel (joblib).
    n_bootstrap : int, default=0
        Resamples of each test set for a 95% interval; 0 reports the score
        itself as its interval.
    random_state : int, RandomState or None
        Seeds the bootstrap.
    progress : callable, default=None
        Called with the number of (estimator x split) fits each finished layer
        took.

    Returns
    -------
    rows : list of dict
        One per layer x estimator x split, in network order: ``layer``,
        ``layer_index``, ``head``, ``split``, ``score``, ``score_std``,
        ``score_low``, ``score_high``, ``fit_time`` and ``scores``.
    """
    tasks = (
        delayed(_score_layer)(
            layer, index, features[:, cols], y, estimators, scorers,
            Splits(cv=splits.cv, tests={k: (F[:, cols], yt) for k, (F, yt) in splits.tests.items()}),
            n_bootstrap, random_state,
        )
        for index, (layer, cols) in enumerate(slices.items())
    )
    per_layer = []
    for rows in Parallel(n_jobs=n_jobs, return_as="generator")(tasks):
        per_layer.append(rows)
        if progress is not None:
            progress(len(estimators) * splits.count())
    return [row for rows in per_layer for row in rows]
