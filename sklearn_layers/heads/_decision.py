"""Class predictions and probabilities derived from a classifier's scores."""

import numpy as np
import scipy.special

from ._rowwise import softmax


class DecisionClassifierMixin:
    """``predict``, ``predict_proba`` and ``predict_log_proba`` from ``decision_function``.

    As scikit-learn's ``LinearClassifierMixin``: the class defines
    ``decision_function`` (one column, the score of ``classes_[1]``, for two
    classes; one column per class otherwise) and ``classes_``; the
    probabilities are the softmax of the scores divided by
    ``_proba_temperature`` (the sigmoid of the one column for two
    classes, which is the same thing).
    """

    @property
    def _proba_temperature(self):
        """Divisor of the scores before the softmax: 1 unless a head says otherwise."""
        return 1.0

    def predict(self, X):
        """Class of highest score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]

    def predict_proba(self, X):
        """Class probabilities: softmax of the scores (sigmoid for two classes).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities, columns in the order of `classes_`.
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            scores = scores / self._proba_temperature
            return scipy.special.expit(np.column_stack([-scores, scores]))
        return softmax(scores, self._proba_temperature)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, computed without rounding to ``log(0)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log class probabilities, columns in the order of `classes_`.
        """
        scores = self.decision_function(X) / self._proba_temperature
        if scores.ndim == 1:
            return -np.logaddexp(0.0, np.column_stack([scores, -scores]))
        return scipy.special.log_softmax(scores, axis=1)
