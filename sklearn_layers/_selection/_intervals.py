"""95% intervals around a layer's score: the spread of CV folds, or a bootstrap.

A test set of 400 rows gives an accuracy within about +-2 points of the
truth, enough to change which layer looks best; the sweep table carries an
interval for each point so that a plot (and a reader) can show it.
"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if

from ..utils._compat import BUILTIN_SCORERS

_Z95 = 1.959964


def fold_interval(scores):
    """Mean +- 1.96 standard errors over folds (normal approximation)."""
    scores = np.asarray(scores, dtype=float)
    mean = float(scores.mean())
    if scores.size < 2:
        return mean, mean
    half = _Z95 * scores.std(ddof=1) / np.sqrt(scores.size)
    return mean - float(half), mean + float(half)


def _has(method):
    return lambda proxy: hasattr(proxy.fitted, method)


class _Answers(ClassifierMixin, BaseEstimator):
    """A fitted classifier's outputs on fixed rows, served by row index.

    Scoring a bootstrap resample then costs a metric, not a prediction: the
    scorer passes an index array where it would pass rows.
    """

    def __init__(self, fitted, X):
        self.fitted = fitted
        self.X = X
        self.classes_ = fitted.classes_
        self._outputs = {}

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
    scorer : callable
        ``scorer(estimator, X, y)``.
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
    # built-in scorers read a classifier's outputs: compute them once
    builtin = isinstance(scorer, BUILTIN_SCORERS) and hasattr(fitted, "classes_")
    answers = _Answers(fitted, X) if builtin else None
    scores = []
    for _ in range(n_bootstrap):
        rows = rng.randint(0, n, n)
        if answers is not None:
            scores.append(scorer(answers, rows[:, None], y[rows]))
        else:
            scores.append(scorer(fitted, X[rows], y[rows]))
    low, high = np.nanpercentile(np.asarray(scores, dtype=float), [2.5, 97.5])
    return float(low), float(high)
