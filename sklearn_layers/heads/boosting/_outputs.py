"""The prediction methods of the boosted heads (GrowNet, RFRBoost), written once.

Each head gives its raw output, one column per output: ``_raw_predict(X)`` and
``_staged_raw_predict(X)`` (the model cut after each stage). A classifier's
single column is the log-odds of its second class; a regressor maps its raw
output to predictions with ``_prediction_from_raw``.
"""

import numpy as np
from scipy.special import expit, softmax


def predict_proba_columns(raw):
    """Probabilities per output column: sigmoid for one column, softmax for more."""
    return expit(raw) if raw.shape[1] == 1 else softmax(raw, axis=1)


class ClassifierOutputs:
    """``decision_function``, ``predict``, ``predict_proba`` and their staged forms."""

    @staticmethod
    def _proba_from_raw(raw):
        P = predict_proba_columns(raw)
        return np.column_stack([1.0 - P[:, 0], P[:, 0]]) if raw.shape[1] == 1 else P

    def _label_from_raw(self, raw):
        codes = (raw[:, 0] > 0).astype(int) if raw.shape[1] == 1 else raw.argmax(axis=1)
        return self.classes_[codes]

    @staticmethod
    def _decision_from_raw(raw):
        return raw[:, 0] if raw.shape[1] == 1 else raw

    def decision_function(self, X):
        """Raw output of the model.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        decision : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Log-odds of the second class for two classes, one logit per class
            otherwise.
        """
        return self._decision_from_raw(self._raw_predict(X))

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels, from ``classes_``.
        """
        return self._label_from_raw(self._raw_predict(X))

    def predict_proba(self, X):
        """Predict class probabilities.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities, columns in the order of ``classes_``.
        """
        return self._proba_from_raw(self._raw_predict(X))

    def staged_decision_function(self, X):
        """Raw output of the model after each stage.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        decision : ndarray of shape (n_samples,) or (n_samples, n_classes)
            :meth:`decision_function` of the model cut after stage ``t``.
        """
        for raw in self._staged_raw_predict(X):
            yield self._decision_from_raw(raw)

    def staged_predict(self, X):
        """Predict class labels after each stage.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        y : ndarray of shape (n_samples,)
            Predicted labels of the model cut after stage ``t``.
        """
        for raw in self._staged_raw_predict(X):
            yield self._label_from_raw(raw)

    def staged_predict_proba(self, X):
        """Predict class probabilities after each stage.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities of the model cut after stage ``t``.
        """
        for raw in self._staged_raw_predict(X):
            yield self._proba_from_raw(raw)


class RegressorOutputs:
    """``predict`` and ``staged_predict``, through the head's ``_prediction_from_raw``."""

    def predict(self, X):
        """Predict regression targets.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted values.
        """
        return self._prediction_from_raw(self._raw_predict(X))

    def staged_predict(self, X):
        """Predict regression targets after each stage.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        y : ndarray of shape (n_samples,)
            Predicted values of the model cut after stage ``t``.
        """
        for raw in self._staged_raw_predict(X):
            yield self._prediction_from_raw(raw)
