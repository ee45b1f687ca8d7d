"""Scores of a layer and their 95% intervals: the spread of CV folds, or a bootstrap.

A test set of 400 rows gives an accuracy within about +-2 points of the
truth, enough to change which layer looks best; the sweep table carries an
interval for each point so that a plot (and a reader) can show it.

A bootstrap scores the same fitted estimator on a few hundred resamples of
the test rows. It scores with the very function of the point score; where that
function is known to read only the estimator's outputs (a scorer scikit-learn
builds from a name, or the ``score`` of ``ClassifierMixin``/``RegressorMixin``),
the outputs are computed once and each resample costs a metric, not a
prediction.
"""

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, check_scoring, r2_score
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if

_Z95 = 1.959964


def fold_interval(scores):
    """Mean +- 1.96 standard errors over folds (normal approximation)."""
    scores = np.asarray(scores, dtype=float)
    mean = float(scores.mean())
    if scores.size < 2:
        return mean, mean
    half = _Z95 * scores.std(ddof=1) / np.sqrt(scores.size)
    return mean - float(half), mean + float(half)


class LayerScorer:
    """``scorer(estimator, X, y)`` for ``scoring``, which also scores resamples cheaply.

    Parameters
    ----------
    estimator : estimator
        What ``check_scoring`` checks ``scoring`` against.
    scoring : str, callable or None
        As in scikit-learn: a scorer name, a callable ``(estimator, X, y)``,
        or None for the estimator's own ``score``.
    """

    def __init__(self, estimator, scoring):
        self.scoring = scoring
        self.scorer = check_scoring(estimator, scoring=scoring)

    def __call__(self, estimator, X, y):
        return self.scorer(estimator, X, y)

    def resampled(self, fitted, X):
        """``score(rows, y_rows)``: the score of ``fitted`` on the rows ``X[rows]``."""
        if isinstance(self.scoring, str):
            # a scorer built from a name reads predict / predict_proba /
            # decision_function only: served by row index from one call each
            answers = _Outputs(fitted, X)
            return lambda rows, y: self.scorer(answers, rows[:, None], y)
        if self.scoring is None:
            metric = _mixin_score_metric(fitted)
            if metric is not None:
                predicted = fitted.predict(X)
                return lambda rows, y: metric(y, predicted[rows])
            return lambda rows, y: fitted.score(X[rows], y)
        return lambda rows, y: self.scorer(fitted, X[rows], y)


def _mixin_score_metric(fitted):
    """The metric of ``fitted.score`` when it is scikit-learn's mixin's, else None."""
    final = fitted.steps[-1][1] if isinstance(fitted, Pipeline) else fitted
    score = getattr(type(final), "score", None)
    if score is ClassifierMixin.score:
        return accuracy_score
    if score is RegressorMixin.score:
        return r2_score
    return None


def _has(method):
    return lambda outputs: hasattr(outputs.fitted, method)


class _Outputs:
    """A fitted estimator's outputs on fixed rows, served by row index."""

    def __init__(self, fitted, X):
        self.fitted = fitted
        self.X = X
        self._outputs = {}
        if hasattr(fitted, "classes_"):
            self.classes_ = fitted.classes_

    def __sklearn_tags__(self):
        return self.fitted.__sklearn_tags__()

    def _answer(self, method, rows):
        if method not in self._outputs:
            self._outputs[method] = getattr(self.fitted, method)(self.X)
        return self._outputs[method][np.asarray(rows).ravel()]

    def predict(self, rows):
        return self._answer("predict", rows)

    @available_if(_has("predict_proba"))
    def predict_proba(self, rows):
        return self._answer("predict_proba", rows)

    @available_if(_has("decision_function"))
    def decision_function(self, rows):
        return self._answer("decision_function", rows)


def bootstrap_interval(scorer, fitted, X, y, *, n_bootstrap, random_state=None):
    """2.5th and 97.5th percentiles of the score over bootstrap resamples of the rows.

    Parameters
    ----------
    scorer : LayerScorer or callable
        ``scorer(estimator, X, y)``; a :class:`LayerScorer` scores resamples
        from outputs computed once where that gives the same score.
    fitted : estimator
    X, y : the test rows
    n_bootstrap : int
        Resamples; 0 returns the score itself as both ends.
    random_state : int, RandomState or None

    Returns
    -------
    low, high : float
    """
    if n_bootstrap <= 0:
        score = float(scorer(fitted, X, y))
        return score, score
    rng = check_random_state(random_state)
    y = np.asarray(y)
    n = len(y)
    if isinstance(scorer, LayerScorer):
        score = scorer.resampled(fitted, X)
    else:
        def score(rows, y_rows):
            return scorer(fitted, X[rows], y_rows)
    scores = []
    for _ in range(n_bootstrap):
        rows = rng.randint(0, n, n)
        scores.append(score(rows, y[rows]))
    low, high = np.nanpercentile(np.asarray(scores, dtype=float), [2.5, 97.5])
    return float(low), float(high)
