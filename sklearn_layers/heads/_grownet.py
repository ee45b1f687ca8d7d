"""GrowNet: gradient boosting whose weak learners are shallow neural networks."""

from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..utils._compat import (
    Interval,
    RealNotInt,
    StrOptions,
    _fit_context,
    validate_data,
)
from ..utils._threads import cpu_settings
from ._grownet_core import (
    BinaryLogistic,
    Multinomial,
    SquaredError,
    build_ensemble,
    fit_grownet,
)

_PARAMETERS_DOC = """
    n_estimators : int, default=30
        Maximum number of boosting stages (weak networks).

    hidden_units : int, default=32
        Width of both hidden layers of every weak network.

    learning_rate : float, default=0.005
        Step size of the Adam optimiser used in the stage fits and in the
        corrective steps (not a shrinkage factor: shrinkage is played by the
        learned ``boost_rate``).

    boost_rate : float, default=1.0
        Initial weight ``alpha`` of the weak networks' sum. It is learned in
        the corrective steps; the final value is ``boost_rate_``.

    epochs_per_stage : int, default=3
        Passes over the training data when fitting each new weak network.

    corrective_epochs : int, default=2
        Passes over the training data of the corrective step run after each
        stage (from the second on), which fine-tunes all networks and
        ``alpha`` jointly. ``0`` switches the corrective step off.

    batch_size : int or 'auto', default='auto'
        Mini-batch size. ``'auto'`` uses ``min(1024, max(128, n // 32))`` for
        ``n`` training samples: small data sets get enough optimiser steps,
        large ones at most ~32 batches per epoch (each step costs about the
        same whatever its size on CPU, the networks being small). Every
        batch holds at least 2 samples.

    l2_regularization : float, default=1e-3
        L2 penalty (Adam weight decay) on all network weights.

    early_stopping : 'auto' or bool, default=True
        Whether to hold out ``validation_fraction`` of the training data and
        keep the stage with the best validation loss. ``'auto'`` enables it
        when there are more than 10,000 samples, as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`. The
        default differs from there because boosted networks overfit small
        data sets within a few stages (on ``load_diabetes`` the test R^2
        fell from 0.33 after stage 1 to below 0 after 30 stages).

    validation_fraction : float, default=0.1
        Proportion of the training data held out for early stopping.

    n_iter_no_change : int, default=10
        Stop when the validation loss has not improved by more than ``tol``
        for this many stages.

    tol : float, default=1e-7
        Minimum improvement of the validation loss that counts as one.

    random_state : int, RandomState instance or None, default=None
        Seeds the network initialisation, the mini-batch order and the
        validation split. Pass an int for identical fits. Neither numpy's
        nor torch's global random generator is used.

    verbose : int, default=0
        Print one line per stage when positive.

    device : str or torch.device, default='cpu'
        Torch device to train and predict on, e.g. ``'cuda'``. Fitted state
        is always kept on the CPU, so fitted estimators pickle anywhere.

    n_threads : int or None, default=1
        Torch intra-op threads during ``fit`` and prediction; the previous
        setting is restored afterwards. ``None`` leaves torch's setting as
        it is. Results depend (slightly, through float reductions) on the
        thread count, so a fixed default keeps ``random_state`` fits
        identical across machines and joblib workers; one thread is also the
        fastest on small machines, the networks being small."""

_NOTES_DOC = """
    The model is ``F(x) = c0 + alpha * sum_t f_t(x)`` where ``c0`` is the
    constant minimising the loss and each ``f_t`` is a network
    ``Linear -> LeakyReLU -> BatchNorm -> Linear (middle features) -> ReLU ->
    Linear``. Network ``t`` sees the raw features concatenated with the
    middle features of network ``t - 1`` (BatchNorm-ed, as in the reference
    code). Each stage fits the new network to the second-order expansion of
    the loss around the current ensemble output, then a corrective step
    fine-tunes all networks and ``alpha`` on the loss itself.

    Features are standardised internally (mean and standard deviation of the
    training data), so you need not scale them. Missing values are not
    supported: impute them first (a ``ValueError`` says so).

    Cost: the data set becomes a tensor once per fit; each stage fits its
    network on cached inputs (constant cost), but the corrective step after
    stage ``t`` runs through all ``t`` networks, so a fit costs about
    ``corrective_epochs * n_estimators ** 2 / 2`` network passes over the
    data. Measured on ``load_digits`` (one thread, no early stopping): 5, 10,
    20, 40 stages took 0.7, 2.1, 4.9, 17 s of CPU; with
    ``corrective_epochs=0`` the cost is linear (0.3, 0.6, 1.3, 2.7 s).
    Training runs in float32, prediction in float64.

    ``train_score_`` and ``validation_score_`` follow
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier` with
    ``scoring='loss'``: negative losses, entry 0 for the constant model."""

_REFERENCES_DOC = """
    .. [1] S. Badirli, X. Liu, Z. Xing, A. Bhowmik, K. Doan and S. S. Keerthi,
       "Gradient Boosting Neural Networks: GrowNet", arXiv:2002.07971, 2020."""


def _with_docs(cls):
    cls.__doc__ = (
        cls.__doc__.replace("    %(parameters)s", _PARAMETERS_DOC.strip("\n"))
        .replace("    %(notes)s", _NOTES_DOC.strip("\n"))
        .replace("    %(references)s", _REFERENCES_DOC.strip("\n"))
    )
    return cls


class _BaseGrowNet(BaseEstimator):
    """Shared parameters, fitting and staged prediction of the GrowNet estimators."""

    _parameter_constraints: ClassVar[dict] = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "hidden_units": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "boost_rate": [Interval(Real, 0, None, closed="neither")],
        "epochs_per_stage": [Interval(Integral, 1, None, closed="left")],
        "corrective_epochs": [Interval(Integral, 0, None, closed="left")],
        "batch_size": [
            Interval(Integral, 2, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "l2_regularization": [Interval(Real, 0, None, closed="left")],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "validation_fraction": [Interval(RealNotInt, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "device": [str, torch.device],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        *,
        n_estimators=30,
        hidden_units=32,
        learning_rate=0.005,
        boost_rate=1.0,
        epochs_per_stage=3,
        corrective_epochs=2,
        batch_size="auto",
        l2_regularization=1e-3,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        tol=1e-7,
        random_state=None,
        verbose=0,
        device="cpu",
        n_threads=1,
    ):
        self.n_estimators = n_estimators
        self.hidden_units = hidden_units
        self.learning_rate = learning_rate
        self.boost_rate = boost_rate
        self.epochs_per_stage = epochs_per_stage
        self.corrective_epochs = corrective_epochs
        self.batch_size = batch_size
        self.l2_regularization = l2_regularization
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.device = device
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the boosted networks.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; a pandas DataFrame is fine (all columns numeric).

        y : array-like of shape (n_samples,)
            Target values (class labels for the classifier).

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], y_numeric=self._y_numeric
        )
        Y, loss, stratify = self._encode_target(y)
        if X.shape[0] < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples to fit "
                f"(BatchNorm needs batch statistics); got n_samples = {X.shape[0]}."
            )
        try:
            device = torch.device(self.device)
        except RuntimeError as exc:
            raise ValueError(f"Unknown device={self.device!r}: {exc}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={self.device!r} but CUDA is not available.")

        X = X.astype(np.float64)
        self._x_mean = X.mean(axis=0)
        scale = X.std(axis=0)
        self._x_scale = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)

        rng = check_random_state(self.random_state)
        X, Y, val = self._validation_split(X, Y, stratify, rng, device)
        generator = torch.Generator().manual_seed(
            int(rng.randint(np.iinfo(np.int32).max))
        )
        params = {name: getattr(self, name) for name in self._parameter_constraints}
        with cpu_settings(self.n_threads):
            self._state, self.train_score_, self.validation_score_ = fit_grownet(
                self._to_tensor(X, device),
                self._to_tensor(Y, device, False),
                *val,
                loss,
                params,
                generator,
                verbose=self.verbose,
            )
        self.n_estimators_ = len(self._state["learners"])
        self.boost_rate_ = self._state["boost_rate"]
        return self

    def _validation_split(self, X, Y, stratify, rng, device):
        """Hold out the early-stopping set; return (X, Y, (X_val, Y_val))."""
        early_stopping = self.early_stopping
        if early_stopping == "auto":
            early_stopping = X.shape[0] > 10_000
        if not early_stopping:
            return X, Y, (None, None)
        if stratify is not None:
            n_val = int(np.ceil(self.validation_fraction * X.shape[0]))
            counts = np.bincount(stratify)
            if counts.min() < 2 or n_val < len(counts):
                stratify = None  # too few samples to stratify: plain split
        X, X_val, Y, Y_val = train_test_split(
            X,
            Y,
            test_size=self.validation_fraction,
            stratify=stratify,
            random_state=rng.randint(np.iinfo(np.int32).max),
        )
        if X.shape[0] < 2:
            raise ValueError(
                "Not enough samples for early stopping with validation_fraction="
                f"{self.validation_fraction}; set early_stopping=False."
            )
        val = (self._to_tensor(X_val, device), self._to_tensor(Y_val, device, False))
        return X, Y, val

    def _to_tensor(self, array, device, scale=True):
        if scale:
            array = (array - self._x_mean) / self._x_scale
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=device)

    def _staged_raw_predict(self, X):
        """Validate ``X`` now; return an iterator over ``F`` after each stage.

        ``F`` has shape (n_samples, n_outputs).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        device = torch.device(self.device)
        X = torch.as_tensor((X - self._x_mean) / self._x_scale, device=device)

        def stages():
            # Settings apply only while a stage computes, not between yields.
            with cpu_settings(self.n_threads):
                staged = build_ensemble(self._state, device=device).staged(X)
            while True:
                with cpu_settings(self.n_threads):
                    F = next(staged, None)
                if F is None:
                    return
                yield F.cpu().numpy()

        return stages()

    def _raw_predict(self, X):
        for F in self._staged_raw_predict(X):
            pass
        return F

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


@_with_docs
class GrowNetClassifier(ClassifierMixin, _BaseGrowNet):
    """Gradient boosting of shallow neural networks (GrowNet) for classification.

    Binary problems use the logistic loss on one output, multiclass problems
    a softmax (multinomial) loss on one output per class. A drop-in
    replacement for :class:`~sklearn.ensemble.HistGradientBoostingClassifier`
    on numeric features (layer features or tabular data).

    Parameters
    ----------
    %(parameters)s

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

    n_estimators_ : int
        Number of stages kept: the best validation stage with early stopping,
        else ``n_estimators``.

    boost_rate_ : float
        Learned weight ``alpha`` of the networks' sum.

    train_score_ : ndarray of shape (n_stages_trained + 1,)
        Negative loss on the training data after each stage; entry 0 is the
        constant model.

    validation_score_ : ndarray of shape (n_stages_trained + 1,)
        Negative loss on the validation data after each stage; empty without
        early stopping.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    GrowNetRegressor : The same model for regression.
    sklearn.ensemble.HistGradientBoostingClassifier : Gradient-boosted trees.

    Notes
    -----
    %(notes)s

    References
    ----------
    %(references)s

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import GrowNetClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = GrowNetClassifier(n_estimators=3, random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    >>> clf.score(X, y) > 0.9
    True
    >>> len(list(clf.staged_predict(X[:2]))) == clf.n_estimators_ <= 3
    True
    """

    _y_numeric = False

    def _encode_target(self, y):
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        n_classes = len(self.classes_)
        if n_classes < 2:
            raise ValueError(
                "GrowNetClassifier needs samples of at least 2 classes in the "
                f"data, but the data contains only one class: {self.classes_[0]!r}."
            )
        codes = encoder.transform(y)
        if n_classes == 2:
            return codes[:, None].astype(np.float32), BinaryLogistic(), codes
        return np.eye(n_classes, dtype=np.float32)[codes], Multinomial(), codes

    def _proba_from_raw(self, F):
        if F.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-F[:, 0]))
            return np.column_stack([1.0 - p, p])
        F = F - F.max(axis=1, keepdims=True)
        expF = np.exp(F)
        return expF / expF.sum(axis=1, keepdims=True)

    def _label_from_raw(self, F):
        codes = (F[:, 0] > 0).astype(int) if F.shape[1] == 1 else F.argmax(axis=1)
        return self.classes_[codes]

    def decision_function(self, X):
        """Raw ensemble output ``F(X)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        decision : ndarray of shape (n_samples,) or (n_samples, n_classes)
            Log-odds of the positive class for binary problems, one logit
            per class otherwise.
        """
        F = self._raw_predict(X)
        return F[:, 0] if F.shape[1] == 1 else F

    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
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
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities, columns in the order of ``classes_``.
        """
        return self._proba_from_raw(self._raw_predict(X))

    def staged_predict(self, X):
        """Predict class labels after each stage.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        y : ndarray of shape (n_samples,)
            Predicted labels of the ensemble of the first ``t`` networks.
        """
        for F in self._staged_raw_predict(X):
            yield self._label_from_raw(F)

    def staged_predict_proba(self, X):
        """Predict class probabilities after each stage.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        proba : ndarray of shape (n_samples, n_classes)
            Class probabilities of the ensemble of the first ``t`` networks.
        """
        for F in self._staged_raw_predict(X):
            yield self._proba_from_raw(F)


@_with_docs
class GrowNetRegressor(RegressorMixin, _BaseGrowNet):
    """Gradient boosting of shallow neural networks (GrowNet) for regression.

    Squared-error loss: each stage fits the residuals. The target is
    standardised internally and predictions are returned in its units. A
    drop-in replacement for
    :class:`~sklearn.ensemble.HistGradientBoostingRegressor` on numeric
    features.

    Parameters
    ----------
    %(parameters)s

    Attributes
    ----------
    n_estimators_ : int
        Number of stages kept: the best validation stage with early stopping,
        else ``n_estimators``.

    boost_rate_ : float
        Learned weight ``alpha`` of the networks' sum.

    train_score_ : ndarray of shape (n_stages_trained + 1,)
        Negative half mean squared error (of the standardised target) on the
        training data after each stage; entry 0 is the constant model.

    validation_score_ : ndarray of shape (n_stages_trained + 1,)
        The same on the validation data; empty without early stopping.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    GrowNetClassifier : The same model for classification.
    sklearn.ensemble.HistGradientBoostingRegressor : Gradient-boosted trees.

    Notes
    -----
    %(notes)s

    References
    ----------
    %(references)s

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from sklearn_layers import GrowNetRegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, noise=1, random_state=0)
    >>> reg = GrowNetRegressor(n_estimators=3, random_state=0).fit(X, y)
    >>> reg.predict(X[:2]).shape
    (2,)
    >>> reg.score(X, y) > 0.9
    True
    """

    _y_numeric = True

    def _encode_target(self, y):
        y = np.asarray(y, dtype=np.float64)
        self._y_mean = y.mean()
        scale = y.std()
        self._y_scale = scale if scale > 10 * np.finfo(np.float64).eps else 1.0
        Y = ((y - self._y_mean) / self._y_scale)[:, None]
        return Y.astype(np.float32), SquaredError(), None

    def predict(self, X):
        """Predict regression targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted values.
        """
        return self._raw_predict(X)[:, 0] * self._y_scale + self._y_mean

    def staged_predict(self, X):
        """Predict regression targets after each stage.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input samples.

        Yields
        ------
        y : ndarray of shape (n_samples,)
            Predictions of the ensemble of the first ``t`` networks.
        """
        for F in self._staged_raw_predict(X):
            yield F[:, 0] * self._y_scale + self._y_mean
