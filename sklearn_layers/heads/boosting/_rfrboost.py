"""RFRBoost estimators: Random Feature Representation Boosting for tabular data and layer features.

:class:`_BaseRFRBoost` holds the parameters, the input reading (shared with
GrowNet: ``_tabular.py`` and GrowNet's ``_validate_X``), the fit loop, early
stopping and staged prediction; :class:`RFRBoostClassifier` and
:class:`RFRBoostRegressor` add their targets and top models. The numbers are
computed in ``_rfr_core.py``.
"""

import contextlib
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_array, check_random_state
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
)
from threadpoolctl import threadpool_limits

from ...utils._compat import (
    Interval,
    RealNotInt,
    StrOptions,
    _fit_context,
)
from ...utils._repr import ReprMixin
from .._validation import check_sample_weight
from ._grownet import _BaseGrowNet
from ._outputs import ClassifierOutputs, RegressorOutputs
from ._rfr_core import (
    Upscale,
    fit_logistic_top,
    fit_ridge_top,
    fit_stage,
    logistic_loss,
)
from ._tabular import TabularEncoder, weighted_mean_std

# The logistic top model's penalty under l2_regularization="auto" (GCV has no
# closed form there); the reference code's default is 1e-4, 1e-2 was the
# better of 1e-3, 1e-2 and 3e-2 on the benchmark's classification sets.
_LOGISTIC_AUTO_L2 = 1e-2

# Bounds of representation_width="auto" (2 * sqrt(n_train)).
_AUTO_WIDTH = (16, 64)

# HistGradientBoosting's threshold for early_stopping="auto".
_AUTO_EARLY_STOPPING_ROWS = 10_000

_DOCS = """
    learning_rate : float, default=1.0
        Shrinkage of each stage's step: the step found by the line search
        is multiplied by ``learning_rate`` before it is added to the
        representation. ``1`` (the paper's choice) takes the full
        line-searched step.

    max_iter : int, default=5
        Maximum number of boosting stages (residual blocks), the reference
        code's default depth. Each stage is a closed-form solve, so stages
        are few compared with the trees of
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`.

    representation_width : int or 'auto', default='auto'
        Width of the residual representation ``Phi``: the number of random
        ``tanh`` features of the input that start it, and of the columns
        each stage updates. ``'auto'`` is ``2 * sqrt(n)`` for ``n`` training
        rows, between 16 and 64 (random features need about ``sqrt(n)`` of
        them to learn at the rate of the kernel they approximate; wider
        overfits small data, on large data 64 bounds the cost).

    n_features_per_stage : int or 'auto', default='auto'
        Number of random ``tanh`` features each stage draws from the
        current representation and the input; its step is a linear map of
        them (``n_features_per_stage x representation_width``). ``'auto'``
        is twice the representation's width.

    l2_regularization : float or 'auto', default='auto'
        Ridge penalty of the closed-form solves (each stage's step and the
        regressor's top model) and of the classifier's logistic top model,
        per unit of the weighted mean loss (so it means the same whatever
        the number of rows); features and regression targets are
        standardised. ``'auto'`` chooses each ridge penalty by generalised
        cross-validation among 17 values from 1e-5 to 1e3 (one
        eigendecomposition per solve; it counts rows, not weights) and
        gives the logistic top model 1e-2.

    categorical_features : array-like of {bool, int, str} or 'from_dtype' or None, \
default='from_dtype'
        Which features are categorical, read as
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier` and
        :class:`~sklearn_layers.GrowNetClassifier` read them (the same
        code): ``'from_dtype'`` takes the DataFrame columns of a
        categorical dtype (none for arrays), else a boolean mask, integer
        indices or column names; ``None`` means none. Each is one-hot
        encoded with the training rows' categories; missing values are a
        category of their own when training had them, unseen categories
        encode as all zeros.

    early_stopping : 'auto' or bool, default='auto'
        Whether to hold out ``validation_fraction`` of the training rows and
        stop when the validation loss stops improving; ``'auto'`` enables
        it above 10,000 rows, as in
        :class:`~sklearn.ensemble.HistGradientBoostingClassifier`. The
        model is cut back to the stage with the best validation loss.

    validation_fraction : int or float, default=0.1
        Share (float) or number (int) of the rows held out for early
        stopping, stratified for classification. The rows are split off
        before anything is learned from the data.

    n_iter_no_change : int, default=3
        Stop when the validation loss has not improved on its best by more
        than ``tol`` for this many stages.

    tol : float, default=1e-7
        Minimum improvement of the validation loss that counts as one.

    verbose : int, default=0
        ``0`` is silent, ``1`` or more prints one line per stage.

    random_state : int, RandomState instance or None, default=None
        Seeds the validation split and the random weights, through
        :func:`~sklearn.utils.check_random_state`; numpy's global generator
        is not used.

    n_threads : int or None, default=None
        BLAS threads during ``fit`` and prediction, restored afterwards;
        ``None`` leaves the setting as it is. The matrices are small, so
        one thread is often the fastest on small data or a busy machine."""

_NOTES = """
    RFRBoost [1]_ builds a residual network by gradient boosting in the
    space of representations: ``Phi_0`` is ``representation_width``
    standardised random ``tanh`` features of the encoded input ``X0``;
    stage ``t`` draws ``n_features_per_stage`` random ``tanh`` features
    ``F_t`` of ``[Phi_t, X0]`` and updates

    ``Phi_{t+1} = standardise(Phi_t + learning_rate * a_t * F_t @ Delta_t)``

    where ``Delta_t`` is the ridge solution (closed form) fitting the
    negative functional gradient of the loss with respect to ``Phi_t``
    through the current top model, and ``a_t`` the line search along
    ``F_t @ Delta_t`` (closed form for the squared error, a few scalar
    Newton steps for the cross-entropy). After every stage the linear top
    model is refitted on ``Phi_{t+1}``. No weight is trained by
    backpropagation; the random weights are drawn once.

    Differences from the paper's reference code: the random weights are
    Gaussian (its ``'iid'`` features; its SWIM sampling is not offered);
    the representation is re-standardised with the training rows' weighted
    statistics, stored with the stage (its BatchNorm without running
    statistics recomputes them on every batch it predicts); one random
    layer reads ``[Phi_t, X0]`` instead of two concatenated layers.

    Input: numeric columns are standardised with the training rows'
    weighted mean and standard deviation; a missing value (NaN) becomes
    the mean plus a missingness indicator for each column that had missing
    values in training; categorical features are one-hot encoded (the
    encoding GrowNet uses). Training runs in float32 (the solves of the
    small systems in float64), prediction in float64. Rows of weight 0 are
    dropped before anything else."""

_REFERENCES = """
    .. [1] N. Zozoulenko, T. Cass and L. Gonon, "Random Feature
       Representation Boosting", arXiv:2501.18283, 2025."""


def _with_docs(cls):
    doc = cls.__doc__
    texts = {
        "params": _DOCS, "attributes": _ATTRIBUTES, "notes": _NOTES, "references": _REFERENCES,
    }
    for key, text in texts.items():
        doc = doc.replace(f"\n    %({key})s", text)
    cls.__doc__ = doc
    return cls


class _BaseRFRBoost(ReprMixin, BaseEstimator):
    """Parameters, input reading, the fit loop and staged prediction of both estimators."""

    _parameter_constraints: ClassVar[dict] = {
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "representation_width": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "n_features_per_stage": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "l2_regularization": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "early_stopping": [StrOptions({"auto"}), "boolean"],
        "validation_fraction": [
            Interval(RealNotInt, 0, 1, closed="neither"),
            Interval(Integral, 1, None, closed="left"),
        ],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
    }

    def _threads(self):
        """BLAS threads limited to ``n_threads`` for the duration of a computation."""
        if self.n_threads is None:
            return contextlib.nullcontext()
        return threadpool_limits(self.n_threads, user_api="blas")

    # GrowNet's reading of X: the same categorical mask, numeric checks and
    # validation (a function of the parameters and is_categorical_ only).
    _validate_X = _BaseGrowNet._validate_X

    def _encode(self, X):
        numeric, categorical = self._validate_X(X, reset=False)
        return self._encoder.transform(numeric, categorical)

    # ------------------------------------------------------------------- fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the boosted random-feature network.

        Parameters
        ----------
        X : {array-like, DataFrame} of shape (n_samples, n_features)
            Training data. NaN marks a missing value; categorical features
            (see ``categorical_features``) may hold any values, strings
            included.

        y : array-like of shape (n_samples,)
            Target values (class labels for the classifier).

        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in every solve, loss and statistic
            learned from the data. ``None`` gives every sample weight 1.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        numeric, categorical = self._validate_X(X, reset=True)
        y = column_or_1d(y, warn=True)
        check_consistent_length(numeric, y)
        w = check_sample_weight(sample_weight, len(y))
        Y, stratify = self._encode_y(y)
        w = w * self._class_weights(y)
        kept = np.flatnonzero(w > 0)
        rng = check_random_state(self.random_state)
        split_seed, feature_seed = (int(s) for s in rng.randint(2**31 - 1, size=2))
        self.do_early_stopping_ = (
            len(kept) > _AUTO_EARLY_STOPPING_ROWS
            if self.early_stopping == "auto"
            else bool(self.early_stopping)
        )
        train, val = kept, None
        if self.do_early_stopping_:
            train, val = self._split(kept, None if stratify is None else stratify[kept],
                                     split_seed)

        def rows(index):
            cat = None if categorical is None else (
                categorical.iloc[index] if hasattr(categorical, "iloc")
                else categorical[index]
            )
            return numeric[index], cat

        self._encoder = TabularEncoder().fit(*rows(train), w[train])
        X0 = self._encoder.transform(*rows(train))
        Y_train = self._fit_target(Y[train], w[train])
        validation = (None, None, None)
        if val is not None:
            validation = (
                self._encoder.transform(*rows(val)),
                self._scale_target(Y[val]),
                w[val],
            )
        with self._threads():
            self._fit_loop(X0, Y_train, w[train], feature_seed, *validation)
        return self

    def _split(self, index, stratify, seed):
        n = len(index)
        if stratify is not None:
            size = self.validation_fraction
            n_val = size if isinstance(size, Integral) else int(np.ceil(size * n))
            counts = np.bincount(stratify)
            counts = counts[counts > 0]
            if counts.min() < 2 or n_val < len(counts) or n - n_val < len(counts):
                stratify = None  # too few rows per class to stratify
        try:
            train, val = train_test_split(
                index, test_size=self.validation_fraction, stratify=stratify,
                random_state=seed,
            )
        except ValueError as exc:
            raise ValueError(
                f"Cannot hold out validation_fraction={self.validation_fraction} "
                f"of {n} samples for early stopping ({exc}); set "
                "early_stopping=False or change validation_fraction."
            ) from None
        return np.sort(train), np.sort(val)

    def _fit_loop(self, X0, Y, w, seed, X0_val, Y_val, w_val):
        """Fit the stages on ``(X0, Y, w)``; with validation rows, stop early and cut back."""
        squared = self._squared
        alpha = None if self.l2_regularization == "auto" else self.l2_regularization
        width = self.representation_width
        if width == "auto":
            width = int(np.clip(round(2 * np.sqrt(len(X0))), *_AUTO_WIDTH))
        n_features = self.n_features_per_stage
        if n_features == "auto":
            n_features = 2 * width
        self.representation_width_, self.n_features_per_stage_ = width, n_features
        upscale, Phi = Upscale.fit(np.random.default_rng([seed, 0]), X0, w, width)
        top = self._fit_top(Phi, Y, w, None)
        stages, tops = [], [top]
        train_scores = [-self._loss(top(Phi), Y, w)]
        val_scores = []
        if X0_val is not None:
            Phi_val = upscale(X0_val)
            val_scores.append(-self._loss(top(Phi_val), Y_val, w_val))
        best, since_best = 0, 0
        for t in range(self.max_iter):
            stage, Phi = fit_stage(
                np.random.default_rng([seed, t + 1]), Phi, X0, Y, w, top,
                squared=squared, n_features=n_features, alpha=alpha,
                learning_rate=self.learning_rate,
            )
            top = self._fit_top(Phi, Y, w, top)
            stages.append(stage)
            tops.append(top)
            train_scores.append(-self._loss(top(Phi), Y, w))
            line = f"stage {t + 1}: train loss {-train_scores[-1]:.5g}"
            if X0_val is not None:
                Phi_val = stage(Phi_val, X0_val)
                val_scores.append(-self._loss(top(Phi_val), Y_val, w_val))
                line += f", validation loss {-val_scores[-1]:.5g}"
                if best == 0 or val_scores[-1] > val_scores[best] + self.tol:
                    best, since_best = t + 1, 0
                else:
                    since_best += 1
            if self.verbose:
                print(line)
            if X0_val is not None and since_best >= self.n_iter_no_change:
                break
        n_kept = best if X0_val is not None else len(stages)
        self._upscale = upscale
        self._stages = stages[:n_kept]
        self._tops = tops[: n_kept + 1]
        self.n_iter_ = n_kept
        self.train_score_ = np.asarray(train_scores if X0_val is not None else [])
        self.validation_score_ = np.asarray(val_scores)

    # ------------------------------------------------------------- predict

    def _staged_raw_predict(self, X):
        """Validate ``X`` now; return an iterator over the raw output after each stage."""
        check_is_fitted(self)
        # Prediction in float64: a row's output does not depend on the other
        # rows of its batch (float32 matrix products may round differently
        # for other batch sizes).
        X0 = self._encode(X).astype(np.float64)

        def stages():
            # Thread limits apply while a stage computes, not between yields.
            with self._threads():
                Phi = self._upscale(X0)
            for stage, top in zip(self._stages, self._tops[1:]):
                with self._threads():
                    Phi = stage(Phi, X0)
                    raw = top(Phi)
                yield raw

        return stages()

    def _raw_predict(self, X):
        raw = None
        for raw in self._staged_raw_predict(X):
            pass
        return raw

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


_ATTRIBUTES = """
    representation_width_ : int
        Width of the residual representation (``representation_width``, or
        what ``'auto'`` chose).

    n_features_per_stage_ : int
        Random features drawn per stage (``n_features_per_stage``, or what
        ``'auto'`` chose).

    n_iter_ : int
        Number of stages (residual blocks) of the fitted model: the best
        validation stage with early stopping, else ``max_iter``.

    do_early_stopping_ : bool
        Whether early stopping was used.

    train_score_ : ndarray of shape (n_stages_trained + 1,)
        Negative loss on the training rows after each stage trained, entry
        0 for the top model on the first representation; empty without
        early stopping.

    validation_score_ : ndarray of shape (n_stages_trained + 1,)
        The same on the validation rows.

    is_categorical_ : ndarray of shape (n_features,) or None
        Boolean mask of the categorical features; ``None`` if there are none.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings."""


@_with_docs
class RFRBoostClassifier(ClassifierOutputs, ClassifierMixin, _BaseRFRBoost):
    """Random Feature Representation Boosting (RFRBoost) for classification.

    A deep residual network of random features built by gradient boosting:
    each stage's output map is solved in closed form, the logistic top
    model refitted, nothing is trained by backpropagation. Two classes use
    the binomial cross-entropy, more the multinomial one. Speaks
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier`'s language:
    categorical features, missing values, sample and class weights, early
    stopping, staged prediction.

    Read more in the :ref:`User Guide <rfrboost>`.

    Parameters
    ----------
    loss : {'log_loss'}, default='log_loss'
        The loss: binomial for two classes, multinomial for more.
    %(params)s

    class_weight : dict or 'balanced' or None, default=None
        Weights of the classes, multiplied into ``sample_weight``:
        ``{label: weight}``, or ``'balanced'`` for ``n_samples / (n_classes
        * np.bincount(y))``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    %(attributes)s

    See Also
    --------
    RFRBoostRegressor : The same model for regression.
    GrowNetClassifier : Boosting of small trained networks.
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
    >>> from sklearn_layers import RFRBoostClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = RFRBoostClassifier(random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    >>> clf.predict_proba(X[:1]).shape
    (1, 3)
    >>> clf.score(X, y) > 0.9
    True
    >>> len(list(clf.staged_predict(X[:2]))) == clf.n_iter_
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseRFRBoost._parameter_constraints,
        "loss": [StrOptions({"log_loss"})],
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }
    _squared = False

    def __init__(
        self,
        loss="log_loss",
        *,
        learning_rate=1.0,
        max_iter=5,
        representation_width="auto",
        n_features_per_stage="auto",
        l2_regularization="auto",
        categorical_features="from_dtype",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=3,
        tol=1e-7,
        verbose=0,
        random_state=None,
        class_weight=None,
        n_threads=None,
    ):
        self.loss = loss
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.representation_width = representation_width
        self.n_features_per_stage = n_features_per_stage
        self.l2_regularization = l2_regularization
        self.categorical_features = categorical_features
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.class_weight = class_weight
        self.n_threads = n_threads

    def _encode_y(self, y):
        check_classification_targets(y)
        self._label_encoder = LabelEncoder().fit(y)
        self.classes_ = self._label_encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                "RFRBoostClassifier needs samples of at least 2 classes in the "
                "data, but the data contains only one class: "
                f"{self.classes_[0]!r}."
            )
        codes = self._label_encoder.transform(y)
        if len(self.classes_) == 2:
            return codes[:, None].astype(np.float64), codes
        return np.eye(len(self.classes_))[codes], codes

    def _class_weights(self, y):
        if self.class_weight is None:
            return 1.0
        values = compute_class_weight(self.class_weight, classes=self.classes_, y=y)
        return values[self._label_encoder.transform(y)]

    def _fit_target(self, Y, w):
        return Y

    def _scale_target(self, Y):
        return Y

    def _fit_top(self, Phi, Y, w, start):
        alpha = self.l2_regularization
        alpha = _LOGISTIC_AUTO_L2 if alpha == "auto" else alpha
        return fit_logistic_top(Phi, Y, w, alpha, start)

    @staticmethod
    def _loss(raw, Y, w):
        return logistic_loss(raw, Y, w)


@_with_docs
class RFRBoostRegressor(RegressorOutputs, RegressorMixin, _BaseRFRBoost):
    """Random Feature Representation Boosting (RFRBoost) for regression.

    A deep residual network of random features built by gradient boosting
    on the squared error: each stage's output map and step are solved in
    closed form, the ridge top model refitted, nothing is trained by
    backpropagation. Speaks
    :class:`~sklearn.ensemble.HistGradientBoostingRegressor`'s language:
    categorical features, missing values, sample weights, early stopping,
    staged prediction.

    Read more in the :ref:`User Guide <rfrboost>`.

    Parameters
    ----------
    loss : {'squared_error'}, default='squared_error'
        The loss.
    %(params)s

    Attributes
    ----------
    %(attributes)s

    See Also
    --------
    RFRBoostClassifier : The same model for classification.
    GrowNetRegressor : Boosting of small trained networks.
    sklearn.ensemble.HistGradientBoostingRegressor : Gradient-boosted trees.

    Notes
    -----
    %(notes)s

    References
    ----------
    %(references)s

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn_layers import RFRBoostRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> reg = RFRBoostRegressor(max_iter=3, random_state=0).fit(X[:300], y[:300])
    >>> reg.score(X[300:], y[300:]) > 0.3
    True
    >>> len(list(reg.staged_predict(X[:2]))) == reg.n_iter_
    True
    """

    _parameter_constraints: ClassVar[dict] = {
        **_BaseRFRBoost._parameter_constraints,
        "loss": [StrOptions({"squared_error"})],
    }
    _squared = True

    def __init__(
        self,
        loss="squared_error",
        *,
        learning_rate=1.0,
        max_iter=5,
        representation_width="auto",
        n_features_per_stage="auto",
        l2_regularization="auto",
        categorical_features="from_dtype",
        early_stopping="auto",
        validation_fraction=0.1,
        n_iter_no_change=3,
        tol=1e-7,
        verbose=0,
        random_state=None,
        n_threads=None,
    ):
        self.loss = loss
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.representation_width = representation_width
        self.n_features_per_stage = n_features_per_stage
        self.l2_regularization = l2_regularization
        self.categorical_features = categorical_features
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.n_threads = n_threads

    def _encode_y(self, y):
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        return y[:, None], None

    def _class_weights(self, y):
        return 1.0

    def _fit_target(self, Y, w):
        mean, scale = weighted_mean_std(Y, w)
        self._target_mean, self._target_scale = float(mean[0]), float(scale[0])
        return self._scale_target(Y)

    def _scale_target(self, Y):
        return (Y - self._target_mean) / self._target_scale

    def _fit_top(self, Phi, Y, w, start):
        alpha = self.l2_regularization
        return fit_ridge_top(Phi, Y, w, None if alpha == "auto" else alpha)

    @staticmethod
    def _loss(raw, Y, w):
        return 0.5 * float((w / w.sum()) @ ((raw - Y) ** 2).sum(axis=1))

    def _prediction_from_raw(self, raw):
        return raw[:, 0] * self._target_scale + self._target_mean
