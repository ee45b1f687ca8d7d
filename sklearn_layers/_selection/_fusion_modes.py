"""How LayerFusionClassifier combines layers: one strategy object per way.

A strategy carries its own parameters (a grid reaches them as
``fusion__C``, ``fusion__cv``, ...), is fitted on the side-by-side features of
the fused layers (one block of columns per layer, ``slices``) and the class
labels, and answers ``predict``, ``predict_proba``, ``predict_log_proba`` and
``decision_function`` for features of the same layout, where it can. Its
fitted attributes are its own (``layer_weights_`` only on the weighted
fusion, ``final_estimator_`` only on stacking): no parameter or attribute of
one way of fusing sits unused on another.
"""

from numbers import Integral, Real

import numpy as np
from joblib import Parallel, delayed
from scipy.special import expit, log_softmax, softmax
from sklearn.base import BaseEstimator, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import check_cv
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if

from ..heads import default_probe
from ..heads._weighted_fusion import EqualWidthLayers, fit_layer_mix, mix_logits
from ..utils._compat import HasMethods, Interval, _fit_context
from ..utils._repr import ReprMixin

_STACK_METHODS = ("predict_proba", "decision_function", "predict")


def _layer_blocks(features, slices):
    return [features[:, cols] for cols in slices.values()]


def _probe(estimator):
    return default_probe() if estimator is None else estimator


def _answers(owner, method):
    """``available_if`` check: the fitted (or configured) estimator answers ``method``."""

    def check(self):
        fitted = getattr(self, owner + "_", None)
        return hasattr(fitted if fitted is not None else self._configured(owner), method)

    return check


class ConcatFusion(ReprMixin, BaseEstimator):
    """The fused layers side by side, into one estimator.

    Exactly a pipeline of a :class:`~sklearn_layers.LayerFeatureTransformer`
    over the fused layers and ``estimator``.

    Parameters
    ----------
    estimator : classifier, default=None
        Fitted on all fused layers' features; ``None`` means
        :func:`~sklearn_layers.default_probe`.

    Attributes
    ----------
    estimator_ : estimator
        The fitted estimator.
    classes_ : ndarray of shape (n_classes,)

    See Also
    --------
    LayerFusionClassifier : Takes this as ``fusion``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import ConcatFusion, LayerFusionClassifier
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> fused = LayerFusionClassifier(make_mlp(4, hidden=(16, 16)), layers=["1", "3"],
    ...                               fusion=ConcatFusion()).fit(X, y)
    >>> fused.fusion_.estimator_.n_features_in_
    32
    """

    _parameter_constraints: dict = {"estimator": [None, HasMethods(["fit", "predict"])]}

    def __init__(self, estimator=None):
        self.estimator = estimator

    def _configured(self, owner):
        return _probe(self.estimator)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, features, slices, y):
        """Fit the estimator on all fused layers' features.

        Parameters
        ----------
        features : ndarray of shape (n_samples, n_features)
            The fused layers side by side.
        slices : dict of str -> slice
            Each layer's columns.
        y : ndarray of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
        """
        self.estimator_ = clone(_probe(self.estimator)).fit(features, y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict(self, features):
        """Class labels of the fused features."""
        return self.estimator_.predict(features)

    @available_if(_answers("estimator", "predict_proba"))
    def predict_proba(self, features):
        """Class probabilities of the fused features."""
        return self.estimator_.predict_proba(features)

    @available_if(_answers("estimator", "predict_log_proba"))
    def predict_log_proba(self, features):
        """Log class probabilities of the fused features."""
        return self.estimator_.predict_log_proba(features)

    @available_if(_answers("estimator", "decision_function"))
    def decision_function(self, features):
        """Decision function of the fused features."""
        return self.estimator_.decision_function(features)


class StackingFusion(ReprMixin, BaseEstimator):
    """One estimator per layer; a final estimator on their cross-fitted outputs.

    What :class:`~sklearn.ensemble.StackingClassifier` does with one base
    estimator per layer: each layer's estimator is fitted on all rows (for
    prediction) and, for the final estimator's training rows, its outputs
    (probabilities when it has ``predict_proba``, else its decision function,
    else its predicted class codes) are cross-fitted over the same ``cv``
    splits for every layer; for two classes the first probability column is
    dropped. It fits ``(n_splits + 1) x n_layers`` estimators. Every estimator
    sees the labels as given, so a ``class_weight`` dict keyed by them works.

    The benchmark of the user guide ("Combining and ranking layers") found
    stacking the most reliable fusion under distribution shift, which is why
    :class:`LayerFusionClassifier` uses it by default.

    Parameters
    ----------
    estimator : classifier, default=None
        Cloned for each layer; ``None`` means :func:`~sklearn_layers.default_probe`.
    final_estimator : classifier, default=None
        The meta-learner; ``None`` means ``LogisticRegression()``, as in
        ``StackingClassifier``.
    cv : int, cross-validation generator or iterable, default=5
        Splits of the cross-fitted outputs.
    n_jobs : int, default=None
        Layers fitted in parallel (joblib).

    Attributes
    ----------
    estimators_ : list of estimators
        One estimator per layer, fitted on all rows.
    final_estimator_ : estimator
        The meta-learner.
    stack_method_ : str
        The method of the layer estimators the meta-learner reads
        (``"predict_proba"``, else ``"decision_function"``, else ``"predict"``).
    classes_ : ndarray of shape (n_classes,)

    See Also
    --------
    LayerFusionClassifier : Takes this as ``fusion``.
    sklearn.ensemble.StackingClassifier : The same, over estimators.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import LayerFusionClassifier, StackingFusion
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> fused = LayerFusionClassifier(make_mlp(4, hidden=(16, 16)), layers=["1", "3"],
    ...                               fusion=StackingFusion(cv=3)).fit(X, y)
    >>> len(fused.fusion_.estimators_), fused.fusion_.stack_method_
    (2, 'predict_proba')
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit", "predict"])],
        "final_estimator": [None, HasMethods(["fit", "predict"])],
        "cv": ["cv_object"],
        "n_jobs": [None, Integral],
    }

    def __init__(self, estimator=None, final_estimator=None, cv=5, n_jobs=None):
        self.estimator = estimator
        self.final_estimator = final_estimator
        self.cv = cv
        self.n_jobs = n_jobs

    def _configured(self, owner):
        if self.final_estimator is None:
            return LogisticRegression()
        return self.final_estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, features, slices, y):
        """Fit one estimator per layer and the final estimator on their cross-fitted outputs.

        Parameters
        ----------
        features : ndarray of shape (n_samples, n_features)
            The fused layers side by side.
        slices : dict of str -> slice
            Each layer's columns.
        y : ndarray of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
        """
        estimator = _probe(self.estimator)
        self.classes_ = np.unique(y)
        self.stack_method_ = next(name for name in _STACK_METHODS if hasattr(estimator, name))
        # one list of splits: every layer is cross-fitted on the same folds
        splits = list(check_cv(self.cv, y, classifier=True).split(features, y))
        fitted = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_and_cross_fit)(estimator, F, y, splits, self.stack_method_,
                                        self.classes_)
            for F in _layer_blocks(features, slices)
        )
        self.estimators_ = [estimator for estimator, _ in fitted]
        meta = self._meta([outputs for _, outputs in fitted])
        self.final_estimator_ = clone(self._configured("final_estimator")).fit(meta, y)
        self.slices_ = slices
        return self

    def _meta(self, outputs):
        columns = []
        for out in outputs:
            if out.ndim == 1:
                out = out.reshape(-1, 1)
            elif self.stack_method_ == "predict_proba" and len(self.classes_) == 2:
                out = out[:, 1:]  # the two columns are collinear
            columns.append(out)
        return np.hstack(columns)

    def _layer_outputs(self, features):
        outputs = []
        for estimator, F in zip(self.estimators_, _layer_blocks(features, self.slices_)):
            out = getattr(estimator, self.stack_method_)(F)
            if self.stack_method_ == "predict":
                out = np.searchsorted(self.classes_, out)
            outputs.append(out)
        return self._meta(outputs)

    def predict(self, features):
        """Class labels from the final estimator."""
        return self.final_estimator_.predict(self._layer_outputs(features))

    @available_if(_answers("final_estimator", "predict_proba"))
    def predict_proba(self, features):
        """Class probabilities from the final estimator."""
        return self.final_estimator_.predict_proba(self._layer_outputs(features))

    @available_if(_answers("final_estimator", "predict_log_proba"))
    def predict_log_proba(self, features):
        """Log class probabilities from the final estimator."""
        return self.final_estimator_.predict_log_proba(self._layer_outputs(features))

    @available_if(_answers("final_estimator", "decision_function"))
    def decision_function(self, features):
        """Decision function of the final estimator."""
        return self.final_estimator_.decision_function(self._layer_outputs(features))


def _fit_and_cross_fit(estimator, F, y, splits, method, classes):
    """The estimator fitted on all rows, and its outputs cross-fitted over ``splits``.

    ``cross_val_predict`` would encode the labels for a probability method
    (a ``class_weight`` dict keyed by the labels would then fail): the folds
    are fitted here on the labels as given, and a fold's columns are placed by
    its ``classes_`` (a class missing from a fold's training rows gets
    probability 0 there, as in ``cross_val_predict``).
    """
    outputs = None
    for train, test in splits:
        fold = clone(estimator).fit(F[train], y[train])
        out = getattr(fold, method)(F[test])
        if method == "predict":
            out = np.searchsorted(classes, out)
        elif out.ndim == 2 and len(fold.classes_) != len(classes):
            placed = np.zeros((len(test), len(classes)), dtype=out.dtype)
            if method == "decision_function":
                placed[:] = np.finfo(out.dtype).min
            placed[:, np.searchsorted(classes, fold.classes_)] = out
            out = placed
        if outputs is None:
            outputs = np.zeros((len(y),) + out.shape[1:], dtype=out.dtype)
        outputs[test] = out
    return clone(estimator).fit(F, y), outputs


class WeightedFusion(ReprMixin, BaseEstimator):
    """A learned softmax weight per layer and a logistic head, fitted jointly.

    The weighted sum of the SUPERB protocol: every fused layer is standardised
    (and, for layers of different widths, projected on its first
    ``n_components`` principal components, default the narrowest layer's
    width, fitted on the training rows, then rescaled to a mean variance of 1),
    mixed as ``m = sum_l softmax(a)_l z_l``, and read by a logistic head
    (binomial for two classes, multinomial otherwise). ``a`` and the head are
    fitted together by L-BFGS on the mean log-loss plus ``||W||^2 / (2 C n)``:
    with one layer it is ``make_pipeline(StandardScaler(), LogisticRegression(C=C))``.

    In the package's benchmark the learned weights ended on one layer in every
    fit (see the user guide, "Why the learned weights end on one layer"):
    :class:`StackingFusion` is the default fusion for that reason.

    Parameters
    ----------
    C : float, default=1.0
        Inverse of the L2 penalty strength of the head, as in
        ``LogisticRegression`` and :class:`~sklearn_layers.LinearProbeClassifier`
        (the intercept and the layer weights are not penalised).
    n_components : int, default=None
        The common width the layers are projected to. ``None`` keeps layers
        of one width as they are and projects layers of different widths to
        the narrowest one's width.
    max_iter : int, default=1000
        Most L-BFGS iterations.
    tol : float, default=1e-5
        Stop when every partial derivative of the objective is at most this in
        absolute value.
    random_state : int, RandomState instance or None, default=None
        Draws the head's initial weights.

    Attributes
    ----------
    layer_weights_ : ndarray of shape (n_layers,)
        The learned softmax weight of each layer (they sum to 1).
    coef_ : ndarray of shape (1, width) or (n_classes, width)
        The head's weights on the mixed features (one row for two classes).
    intercept_ : ndarray of shape (1,) or (n_classes,)
    n_iter_ : int
        L-BFGS iterations run.
    classes_ : ndarray of shape (n_classes,)

    See Also
    --------
    LayerFusionClassifier : Takes this as ``fusion``.
    LayerWeightsDisplay : Plots ``layer_weights_``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import LayerFusionClassifier, WeightedFusion
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> fused = LayerFusionClassifier(make_mlp(4, hidden=(16, 16)), layers=["1", "3"],
    ...                               fusion=WeightedFusion(random_state=0)).fit(X, y)
    >>> round(float(fused.fusion_.layer_weights_.sum()), 12)
    1.0
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, C=1.0, n_components=None, max_iter=1000, tol=1e-5, random_state=None):
        self.C = C
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, features, slices, y):
        """Fit the layer weights and the head.

        Parameters
        ----------
        features : ndarray of shape (n_samples, n_features)
            The fused layers side by side.
        slices : dict of str -> slice
            Each layer's columns.
        y : ndarray of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
        """
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.slices_ = slices
        blocks = _layer_blocks(features, slices)
        self.equal_width_ = EqualWidthLayers(self.n_components).fit(blocks)
        params = fit_layer_mix(
            self.equal_width_.transform(blocks), codes, len(self.classes_), C=self.C,
            max_iter=self.max_iter, tol=self.tol,
            random_state=check_random_state(self.random_state),
        )
        self.layer_weights_ = params["layer_weights"]
        self.coef_, self.intercept_ = params["coef"], params["intercept"]
        self.n_iter_ = params["n_iter"]
        return self

    def _logits(self, features):
        Z = self.equal_width_.transform(_layer_blocks(features, self.slices_))
        return mix_logits(Z, {"layer_weights": self.layer_weights_, "coef": self.coef_,
                              "intercept": self.intercept_})

    def decision_function(self, features):
        """The head's logits; for two classes, the logit of ``classes_[1]``."""
        logits = self._logits(features)
        return logits[:, 0] if logits.shape[1] == 1 else logits

    def predict_proba(self, features):
        """Class probabilities."""
        logits = self._logits(features)
        if logits.shape[1] == 1:
            p = expit(logits[:, 0])
            return np.column_stack([1 - p, p])
        return softmax(logits, axis=1)

    def predict_log_proba(self, features):
        """Log class probabilities."""
        logits = self._logits(features)
        if logits.shape[1] == 1:
            logits = np.column_stack([np.zeros(len(logits)), logits[:, 0]])
        return log_softmax(logits, axis=1)

    def predict(self, features):
        """Class labels."""
        logits = self._logits(features)
        codes = (logits[:, 0] > 0).astype(int) if logits.shape[1] == 1 else logits.argmax(1)
        return self.classes_[codes]
