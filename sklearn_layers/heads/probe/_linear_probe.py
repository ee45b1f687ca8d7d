"""A fast L2-penalised logistic regression probe."""

# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from ...utils._compat import Interval, StrOptions, _fit_context, validate_data
from ...utils._device import resolve_device
from ...utils._repr import ReprMixin
from .._decision import DecisionClassifierMixin
from .._validation import check_sample_weight
from ._core import fit_path, product_threads, warn_if_not_converged


class LinearProbeClassifier(DecisionClassifierMixin, ReprMixin, ClassifierMixin, BaseEstimator):
    """Logistic regression on standardised features, with a whitened solver.

    Without sample or class weights, the model of
    ``make_pipeline(StandardScaler(), LogisticRegression(C=C))`` (with them,
    the weights also enter the standardisation; see Notes): multinomial
    (binomial for two classes) logistic regression whose L2 penalty applies to the coefficients of the *standardised* features, so
    `C` means what it means in that pipeline and the fit converges to the
    same optimum. What differs is the solver: a full-batch L-BFGS whose
    products with `X` run in the dtype of `X` (float32 stays float32), in
    whitened coordinates. Layer activations are correlated and anisotropic,
    which is what makes a first-order solver slow; whitening (a change of
    variables computed once from the features' covariance) removes that
    without changing the optimum.

    Works on any 2-D numeric `X`: features of a network layer or plain
    tabular data.

    Parameters
    ----------
    C : float, default=1.0
        Inverse of the L2 penalty strength, as in
        :class:`~sklearn.linear_model.LogisticRegression`: the objective is
        ``C * sum_i w_i * loss_i + ||W||^2 / 2`` with ``W`` the coefficients
        of the standardised features (of the raw features when
        ``standardize=False``). The intercept is not penalised.

    standardize : bool, default=True
        Standardise the features (weighted mean and standard deviation, the
        constant features left unscaled, as
        :class:`~sklearn.preprocessing.StandardScaler` does) before the
        penalty applies. ``False`` penalises the coefficients of the raw
        features, as ``LogisticRegression(C=C)`` alone does.

    preconditioner : {"auto", "whiten", "diagonal"}, default="auto"
        Coordinates the solver works in; they change how fast it converges,
        never the optimum. ``"whiten"``: coordinates in which the Hessian is
        close to the identity, from a Cholesky factor of the features'
        weighted covariance (``n_samples * n_features**2`` to compute).
        ``"diagonal"``: the features' own scale only. ``"auto"`` chooses by
        shape: it whitens with at least 2 rows per feature and at most 2048
        features, unless more than 1,024 coefficients (outputs x features)
        meet fewer than 16 rows per feature -- shapes on which whitening
        saved no iterations in ``benchmarks/bench_probe.py``.

    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, multiplied into `sample_weight`; ``"balanced"``
        weights each class by ``n_samples / (n_classes * weighted count)``.
        As `sample_weight`, they also weight the standardisation statistics
        (see Notes).

    warm_start : bool, default=False
        Reuse the previous fit: its coefficients as the starting point (when
        the classes and the number of features are the same) and its
        whitening covariance (when the number of features is the same). The
        optimum does not depend on either, only the time to reach it. Meant
        for refitting on another fold or with another `C` (see Notes).

    max_iter : int, default=1000
        Maximum number of L-BFGS iterations.

    tol : float, default=1e-4
        Stop once every entry of the gradient of ``objective / (C * sum_i
        w_i)`` with respect to the standardised coefficients and the
        intercept is at most `tol` in absolute value, or once an iteration
        decreases that objective by less than ``64 * eps`` relatively: the
        stopping rules of ``LogisticRegression(solver="lbfgs", tol=tol)``.

    device : str, torch.device or None, default="cpu"
        Where the solver's products with `X` run: on the CPU through numpy,
        on another device (for example ``"cuda"``) through torch. ``None``
        means the CPU, where `X` is. The fitted
        attributes are numpy arrays; prediction runs in numpy.

    n_threads : int or None, default=None
        Threads of those products during :meth:`fit`: BLAS threads (numpy,
        on the CPU) and torch's intra-op threads. ``None`` leaves both
        settings alone.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.

    coef_ : ndarray of shape (1, n_features) or (n_classes, n_features)
        Coefficients of the decision function in the space of the original
        features (the standardised coefficients divided by `scale_`). One
        row for two classes (positive class ``classes_[1]``), as in
        scikit-learn; the rows sum to zero otherwise.

    intercept_ : ndarray of shape (1,) or (n_classes,)
        Intercept of the decision function in the original feature space.

    mean_ : ndarray of shape (n_features,)
        Weighted mean of the training features.

    scale_ : ndarray of shape (n_features,)
        Weighted standard deviation of the training features, 1 for
        constant features (and everywhere when ``standardize=False``).

    n_iter_ : int
        Number of L-BFGS iterations of the last fit.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.linear_model.LogisticRegression : The same model with scipy's
        L-BFGS (and other solvers and penalties).
    linear_probe_path : Fits over several splits and values of `C`,
        sharing the whitening and warm starts.

    Notes
    -----
    **Equivalence.** Without weights the fit converges to the optimum of
    ``make_pipeline(StandardScaler(), LogisticRegression(C=C))``. With
    weights ``w = sample_weight * class_weight[y]`` it converges to that
    pipeline fitted with ``standardscaler__sample_weight=w`` and
    ``logisticregression__sample_weight=w``: the weights act as repetitions
    of rows everywhere, so an integer weight is exactly a repeated row and
    `class_weight` is exactly the `sample_weight` it implies.

    **Precision.** The products with `X` run in its dtype; sums that make
    the objective, the gradients and the solver's state are float64. With
    float32 `X` a `tol` below about ``1e-6`` may not be reachable; the fit
    then stops when the objective stops decreasing (scikit-learn's
    relative-decrease rule, silently, as scikit-learn does) or, with a
    :class:`~sklearn.exceptions.ConvergenceWarning`, when no step decreases
    it any more.

    **Warm starts and sweeps.** A layer sweep fits the same features on
    several folds and values of `C`. With ``warm_start=True`` each fit
    starts from the previous coefficients (mapped through the new
    standardisation, so they carry over between folds) and reuses the
    previous whitening covariance, which is what makes such a sweep cheap.
    What is reused is keyed by the number of features only: refit a
    warm-started probe on other rows of the *same* features; for another
    layer use another estimator (reusing a stale whitening would only slow
    the solver down). The whitening computed on one fold's rows includes
    rows that are test rows of another fold: they shape the solver's path,
    not the optimum it converges to, so they move the fitted model by at
    most the `tol`-sized distance the solver stops from its optimum.
    :func:`linear_probe_path` runs such a sweep for you.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers.heads import LinearProbeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LinearProbeClassifier().fit(X, y)
    >>> clf.predict(X[[0, 50, 100]])
    array([0, 1, 2])
    >>> clf.predict_proba(X[[0]]).round(2)
    array([[0.98, 0.02, 0.  ]])
    >>> clf.coef_.shape
    (3, 4)
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "standardize": ["boolean"],
        "preconditioner": [StrOptions({"auto", "whiten", "diagonal"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
        "warm_start": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "device": [str, torch.device, None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        C=1.0,
        standardize=True,
        preconditioner="auto",
        class_weight=None,
        warm_start=False,
        max_iter=1000,
        tol=1e-4,
        device="cpu",
        n_threads=None,
    ):
        self.C = C
        self.standardize = standardize
        self.preconditioner = preconditioner
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the penalised logistic regression.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,)
            Target labels; at least two classes.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the samples; they weight the loss and the
            standardisation statistics alike, as repeated rows would.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], order="C")
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        warm = self.warm_start and hasattr(self, "coef_")
        with product_threads(self.n_threads):
            fits, covariance = fit_path(
                X, y, [np.arange(X.shape[0])], [self.C],
                sample_weight=sample_weight, starts=(
                    [(self.classes_, self.coef_, self.intercept_)] if warm else None
                ),
                covariance=getattr(self, "_covariance", None) if warm else None,
                device=resolve_device(self.device), name=type(self).__name__,
                **_solver_settings(self),
            )
        set_solution(self, fits[0], X.dtype)
        # kept for the next warm-started fit only (keyed by the width alone)
        self._covariance = covariance if self.warm_start else None
        return self

    def fit_splits(self, X, y, splits, sample_weight=None):
        """Fit a clone on the training rows of each split, sharing the work.

        Returns what ``[clone(self).fit(X[train], y[train]) for train, _ in
        splits]`` returns, up to the solver's `tol`, in a fraction of its time:
        :func:`linear_probe_path` with this estimator's `C`. Cross-validation
        code in this package (:func:`~sklearn_layers.layer_sweep`,
        :class:`~sklearn_layers.IntermediateLayerClassifier`) calls this
        method on any estimator that has it, and clones and fits the others.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Features of all rows.
        y : array-like of shape (n_samples,)
            Target labels.
        splits : iterable of (train, test) pairs
            Index arrays; only the training indices are used (a repeated
            index counts as a repeated row).
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the rows.

        Returns
        -------
        estimators : list of LinearProbeClassifier
            One fitted clone per split, in the order of `splits`.

        Examples
        --------
        >>> from sklearn.datasets import load_iris
        >>> from sklearn.model_selection import KFold
        >>> from sklearn_layers.heads import LinearProbeClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> splits = list(KFold(3, shuffle=True, random_state=0).split(X))
        >>> fitted = LinearProbeClassifier().fit_splits(X, y, splits)
        >>> [round(m.score(X[test], y[test]), 2) for m, (_, test) in zip(fitted, splits)]
        [0.94, 0.96, 0.96]
        """
        from ._path import linear_probe_path  # the path builds on this class

        fits = linear_probe_path(self, X, y, splits=splits, sample_weight=sample_weight)
        return [fit["estimator"] for fit in fits]

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def decision_function(self, X):
        """Linear scores ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the score of ``classes_[1]`` (one column, as
            scikit-learn's binary classifiers return).
        """
        X = self._check_X(X)
        # In float64: with a large offset and a small spread, the terms
        # (near offset / spread) cancel to scores near 1, and float32 sums of
        # them flip predictions. k columns only, so the cost is the copy of X.
        scores = (X.astype(np.float64, copy=False) - self.mean_) @ self.coef_.T
        scores += self.intercept_ + self.mean_ @ self.coef_.T
        return scores[:, 0] if scores.shape[1] == 1 else scores


def _solver_settings(probe):
    """The settings of `probe` that the core's ``fit_path`` takes as they are."""
    return {name: getattr(probe, name) for name in
            ("class_weight", "standardize", "preconditioner", "tol", "max_iter")}


def set_solution(probe, fit, dtype):
    """Set `probe`'s fitted attributes from one solution of ``fit_path``.

    Warns, as the fit would, when that solution did not converge.
    """
    probe.classes_ = fit["classes"]
    probe.coef_ = fit["coef"]
    probe.intercept_ = fit["intercept"]
    probe.mean_ = fit["mean"]
    probe.scale_ = fit["scale"]
    probe.n_iter_ = fit["n_iter"]
    warn_if_not_converged(fit, name=type(probe).__name__, max_iter=probe.max_iter,
                          tol=probe.tol, dtype=dtype)
    return probe
