"""A ridge probe for continuous targets, its penalty chosen by exact leave-one-out."""

# SPDX-License-Identifier: BSD-3-Clause

from numbers import Real

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ...utils._compat import Interval, _fit_context, validate_data
from ...utils._repr import ReprMixin
from .._validation import check_sample_weight
from ._solver import moments


class LinearProbeRegressor(MultiOutputMixin, ReprMixin, RegressorMixin, BaseEstimator):
    """Ridge regression on standardised features, its penalty chosen by leave-one-out.

    The model of ``make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))``:
    a ridge regression whose L2 penalty applies to the coefficients of the
    *standardised* features, with the penalty among `alphas` whose exact
    leave-one-out squared error is smallest. One eigendecomposition serves
    every value of `alphas` (of the features' covariance when the rows
    outnumber the features, of the rows' Gram matrix otherwise); each value
    then costs ``n_samples * min(n_samples, n_features)``, where
    :class:`~sklearn.linear_model.RidgeCV` multiplies the rows by a
    ``n_features x n_features`` matrix per value.

    The regression counterpart of :class:`LinearProbeClassifier`, for a
    layer's features or any 2-D numeric `X`.

    Parameters
    ----------
    alphas : array-like of float, default=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
        Penalties to choose from (positive): the objective is ``sum_i w_i
        (y_i - z_i @ w - b)**2 + alpha * ||w||**2`` with ``z_i`` the
        standardised features, as in :class:`~sklearn.linear_model.Ridge`.

    standardize : bool, default=True
        Standardise the features (weighted mean and standard deviation,
        constant features left unscaled, as
        :class:`~sklearn.preprocessing.StandardScaler` does) before the
        penalty applies. ``False`` penalises the coefficients of the raw
        features, as ``RidgeCV(alphas)`` alone does.

    Attributes
    ----------
    alpha_ : float
        The chosen penalty.

    best_score_ : float
        Negative mean squared leave-one-out error at `alpha_` (the
        ``best_score_`` of :class:`~sklearn.linear_model.RidgeCV`; with
        sample weights, of the errors scaled by the square roots of the
        weights, as there).

    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
        Coefficients in the space of the original features.

    intercept_ : float or ndarray of shape (n_targets,)
        Intercept in the original feature space.

    mean_ : ndarray of shape (n_features,)
        Weighted mean of the training features.

    scale_ : ndarray of shape (n_features,)
        Weighted standard deviation of the training features, 1 for
        constant features (and everywhere when ``standardize=False``).

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.linear_model.RidgeCV : The same choice of penalty.
    LinearProbeClassifier : The probe for class labels.
    default_probe : ``default_probe("regression")`` is this estimator.

    Notes
    -----
    With ``Z`` the standardised, weight-centred rows scaled by the square
    roots of the weights and ``Z Z^T = P P^T`` (``P = Z V`` from the
    eigenvectors ``V`` of ``Z^T Z``, or ``P = Q sqrt(L)`` from those of
    ``Z Z^T``), the hat matrix of penalty ``alpha`` is ``P diag(1 / (l +
    alpha)) P^T`` plus the intercept's ``w w^T / sum(w)``: its diagonal,
    hence every leave-one-out residual ``(y_i - yhat_i) / (1 - h_ii)``,
    costs one pass over ``P`` per value of `alphas`. The decomposition is
    in float64 whatever the dtype of `X`.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn_layers.heads import LinearProbeRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = LinearProbeRegressor().fit(X, y)
    >>> reg.alpha_
    1.0
    >>> round(reg.score(X, y), 3)
    0.518
    """

    _parameter_constraints: dict = {
        "alphas": ["array-like", Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
    }

    def __init__(
        self,
        *,
        alphas=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
        standardize=True,
    ):
        self.alphas = alphas
        self.standardize = standardize

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the ridge regression for every penalty and keep the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples; they weight the squared
            errors and the standardisation statistics alike.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True,
                             y_numeric=True)
        alphas = _check_alphas(self.alphas)
        weights = check_sample_weight(sample_weight, X.shape[0])
        mean, scale, _ = moments(X, weights, scale=self.standardize)
        y_mean = weights @ y / weights.sum()
        roots = np.sqrt(weights)
        Z = (X - mean) / scale
        Z *= roots[:, None]
        targets = (y - y_mean) * (roots[:, None] if y.ndim == 2 else roots)
        P, eigenvalues, to_coefficients = _decompose(Z)
        projected = P.T @ targets
        squared_P = np.square(P)
        intercept_leverage = weights / weights.sum()
        best = None
        for alpha in alphas:
            inverse = 1.0 / (eigenvalues + alpha)
            fitted = P @ (projected * (inverse[:, None] if targets.ndim == 2 else inverse))
            leverage = squared_P @ inverse + intercept_leverage
            denominator = 1.0 - leverage
            if targets.ndim == 2:
                denominator = denominator[:, None]
            score = -np.mean(np.square((targets - fitted) / denominator))
            if best is None or score > best[0]:
                best = (score, alpha, inverse)
        self.best_score_, self.alpha_, inverse = best
        self.alpha_ = float(self.alpha_)
        solution = projected * (inverse[:, None] if targets.ndim == 2 else inverse)
        W = to_coefficients(solution)
        self.coef_ = (W.T if W.ndim == 2 else W) / scale
        self.intercept_ = y_mean - self.coef_ @ mean
        if y.ndim == 1:
            self.intercept_ = float(self.intercept_)
        self.mean_ = mean
        self.scale_ = scale
        return self

    def predict(self, X):
        """Predicted targets ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Predictions.
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        centred = X.astype(np.float64, copy=False) - self.mean_
        return centred @ self.coef_.T + (self.intercept_ + self.coef_ @ self.mean_)


def _decompose(Z):
    """``(P, eigenvalues, to_coefficients)`` with ``P P^T = Z Z^T``, ``P^T P = diag(eigenvalues)``.

    Tall `Z`: ``P = Z V`` from the eigenvectors ``V`` of ``Z^T Z`` (``n d^2``
    and ``d^3``). Wide `Z`: ``P = Q sqrt(L)`` from ``Z Z^T = Q L Q^T``.
    ``to_coefficients(s)`` maps ``s = diag(1 / (l + alpha)) P^T y`` to the
    ridge coefficients ``(Z^T Z + alpha I)^-1 Z^T y``.
    """
    n, d = Z.shape
    if n > d:
        eigenvalues, V = scipy.linalg.eigh(Z.T @ Z, check_finite=False)
        return Z @ V, np.maximum(eigenvalues, 0.0), lambda solution: V @ solution
    eigenvalues, Q = scipy.linalg.eigh(Z @ Z.T, check_finite=False)
    eigenvalues = np.maximum(eigenvalues, 0.0)
    roots = np.sqrt(eigenvalues)
    # Z^T (Z Z^T + alpha I)^-1 y: a direction with l = 0 has Z^T q = 0, so
    # what it is multiplied by does not matter (its entry of s is 0 too)
    safe = np.where(roots > 0, roots, 1.0)

    def to_coefficients(solution):
        scaled = solution / (safe[:, None] if solution.ndim == 2 else safe)
        return Z.T @ (Q @ scaled)

    return Q * roots, eigenvalues, to_coefficients


def _check_alphas(alphas):
    values = np.atleast_1d(np.asarray(alphas, dtype=float))
    if values.ndim != 1 or values.size == 0 or not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(
            f"alphas must be one or more positive finite numbers; got {alphas!r}."
        )
    return [float(alpha) for alpha in values]
