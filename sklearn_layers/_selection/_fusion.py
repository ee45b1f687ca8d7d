"""LayerFusionClassifier: one classifier over several layers of a frozen network."""

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._transformer import (
    EXTRACTION_CONSTRAINTS,
    LayerFeatureTransformer,
    clone_sharing,
)
from ..heads import default_probe
from ..utils._compat import HasMethods, Interval, StrOptions, _fit_context
from ..utils._repr import ReprMixin
from ..utils._threads import torch_threads
from ._fusion_modes import ConcatFusion, StackFusion, WeightedFusion
from ._ilc import _check_targets


def _fusion_has(method):
    """``available_if`` check: the fitted (or configured) fusion answers ``method``."""

    def check(self):
        if self.fusion == "weighted":
            return True
        if hasattr(self, "fusion_"):
            owner = (self.fusion_.estimator_ if self.fusion == "concat"
                     else self.fusion_.final_estimator_)
        else:
            owner = self._estimator() if self.fusion == "concat" else self._final_estimator()
        return hasattr(owner, method)

    return check


class LayerFusionClassifier(ReprMixin, ClassifierMixin, BaseEstimator):
    """A classifier over several layers of a frozen network at once.

    ``fit`` extracts every fused layer in one forward pass per row (through the
    shared activation cache, so a grid over ``fusion`` and ``layers`` runs each
    row through the network once) and combines the layers in one of three
    ways:

    - ``"weighted"``: a learned softmax weight per layer over equal-width,
      standardised layer features, jointly with a multinomial logistic head
      (the weighted sum of the SUPERB protocol), fitted full batch with
      L-BFGS. Layers of one width are only standardised; layers of different
      widths are each projected on their first ``n_components`` principal
      components (default: the narrowest layer's width), fitted on the
      training rows, after standardisation. The weights are in
      ``layer_weights_``;
    - ``"concat"``: the layers side by side, into one clone of ``estimator``;
    - ``"stack"``: one clone of ``estimator`` per layer, combined by
      ``final_estimator`` trained on their cross-fitted outputs (probabilities
      when the estimator has ``predict_proba``), as
      :class:`~sklearn.ensemble.StackingClassifier` does.

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch net or callable
        The frozen network (see :class:`LayerFeatureTransformer`). A factory is
        called once per ``fit``.
    layers : str, int or list, default="all"
        The layers to fuse (see :class:`LayerFeatureTransformer`).
    fusion : {"weighted", "concat", "stack"}, default="weighted"
        How the layers are combined (see above).
    estimator : classifier, default=None
        The probe of ``"concat"`` (on all layers) and of ``"stack"`` (one per
        layer). ``None`` means :func:`default_probe`. Not used by
        ``"weighted"``. It is fitted on the labels as given (a
        ``class_weight`` dict keyed by them works), except the cross-fitted
        copies of ``"stack"``, which see the labels encoded as
        ``0 .. n_classes - 1`` (``cross_val_predict`` encodes them, as in
        ``StackingClassifier``).
    final_estimator : classifier, default=None
        The meta-learner of ``"stack"``; ``None`` means
        ``LogisticRegression()``, as in ``StackingClassifier``.
    pooling : str, int, callable or dict, default="auto"
        How activations become vectors (see :class:`LayerFeatureTransformer`).
    cv : int, cross-validation generator or iterable, default=5
        Splits of the cross-fitted outputs of ``"stack"``.
    n_components : int, default=None
        ``"weighted"``: the common width the layers are projected to. ``None``
        keeps layers of one width as they are and projects layers of
        different widths to the narrowest one's width.
    alpha : float, default=1e-3
        ``"weighted"``: L2 penalty of the head's weights, added to the mean
        cross-entropy as ``alpha / 2 * ||W||^2`` (``LogisticRegression(C=c)`` on
        ``n`` rows has ``alpha = 1 / (c n)``).
    max_iter : int, default=1000
        ``"weighted"``: most L-BFGS iterations (and 1.25 times as many
        evaluations of the objective).
    tol : float, default=1e-5
        ``"weighted"``: stop when every partial derivative of the objective
        is at most this in absolute value.
    random_state : int, RandomState instance or None, default=None
        ``"weighted"``: draws the head's initial weights (through a
        ``torch.Generator``; the global generators are never used).
    cache : "memory", path, cache object or None, default="memory"
        Activation cache (see :class:`LayerFeatureTransformer`).
    batch_size : int, default=256
        Rows per forward pass.
    device : str, default="cpu"
        Where input batches are sent.
    tokenizer : callable, default=None
        Tokenizer for text input.
    max_length : int, default=None
        Truncation length for the tokenizer.
    preprocess : callable, default=None
        Turns a batch of raw items into model input (see
        :class:`LayerFeatureTransformer`).
    n_jobs : int, default=None
        ``"stack"``: layers fitted in parallel (joblib).
    n_threads : int, default=None
        Torch intra-op threads during extraction and the fit of ``"weighted"``;
        ``None`` leaves torch's setting.
    verbose : int, default=0
        1 or more: a progress bar over the rows that go through the network.

    Attributes
    ----------
    layer_names_ : list of str
        The fused layers, in the order of their features.
    layer_weights_ : ndarray of shape (n_layers,)
        ``"weighted"`` only: the learned softmax weight of each layer (they
        sum to 1).
    n_iter_ : int
        ``"weighted"`` only: L-BFGS iterations run.
    estimator_ : estimator
        ``"concat"`` only: the estimator fitted on all fused layers.
    estimators_ : list of estimators
        ``"stack"`` only: one estimator per layer, fitted on all rows.
    final_estimator_ : estimator
        ``"stack"`` only: the meta-learner.
    stack_method_ : str
        ``"stack"`` only: the method of the layer estimators the meta-learner
        reads (``"predict_proba"``, else ``"decision_function"``, else
        ``"predict"``).
    extractor_ : LayerFeatureTransformer
        Extracts the fused layers' features.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during :term:`fit` (axis 1 of array input).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    IntermediateLayerClassifier : A probe on the one best layer.
    LayerWeightsDisplay : Plot of ``layer_weights_``.
    sklearn.ensemble.StackingClassifier : What ``"stack"`` does, per layer.

    References
    ----------
    .. [1] S. Yang et al., "SUPERB: Speech processing Universal PERformance
       Benchmark", Interspeech 2021 (the learned weighted sum of layers).
    .. [2] A. Grishina et al., "The EarlyBIRD Catches the Bug: On Exploiting
       Early Layers of Encoder Models for More Efficient Code
       Classification", ESEC/FSE 2023 (combining early layers).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import LayerFusionClassifier
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> net = make_mlp(4, hidden=(16, 16))
    >>> fused = LayerFusionClassifier(net, layers=["1", "3"], random_state=0).fit(X, y)
    >>> fused.layer_names_
    ['1', '3']
    >>> float(fused.layer_weights_.sum())
    1.0
    >>> stacked = LayerFusionClassifier(net, layers=["1", "3"], fusion="stack", cv=3).fit(X, y)
    >>> stacked.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        **EXTRACTION_CONSTRAINTS,
        "fusion": [StrOptions({"weighted", "concat", "stack"})],
        "estimator": [None, HasMethods(["fit", "predict"])],
        "final_estimator": [None, HasMethods(["fit", "predict"])],
        "cv": ["cv_object"],
        "n_components": [None, Interval(Integral, 1, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [None, Integral],
    }

    def __init__(
        self,
        model,
        *,
        layers="all",
        fusion="weighted",
        estimator=None,
        final_estimator=None,
        pooling="auto",
        cv=5,
        n_components=None,
        alpha=1e-3,
        max_iter=1000,
        tol=1e-5,
        random_state=None,
        cache="memory",
        batch_size=256,
        device="cpu",
        tokenizer=None,
        max_length=None,
        preprocess=None,
        n_jobs=None,
        n_threads=None,
        verbose=0,
    ):
        self.model = model
        self.layers = layers
        self.fusion = fusion
        self.estimator = estimator
        self.final_estimator = final_estimator
        self.pooling = pooling
        self.cv = cv
        self.n_components = n_components
        self.alpha = alpha
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.cache = cache
        self.batch_size = batch_size
        self.device = device
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.preprocess = preprocess
        self.n_jobs = n_jobs
        self.n_threads = n_threads
        self.verbose = verbose

    def __sklearn_clone__(self):
        return clone_sharing(self)

    def _estimator(self):
        return default_probe() if self.estimator is None else self.estimator

    def _final_estimator(self):
        return LogisticRegression() if self.final_estimator is None else self.final_estimator

    def _fuser(self):
        if self.fusion == "concat":
            return ConcatFusion(self._estimator())
        if self.fusion == "stack":
            return StackFusion(self._estimator(), self._final_estimator(), self.cv,
                               self.n_jobs)
        return WeightedFusion(self.n_components, self.alpha, self.max_iter, self.tol,
                              self.random_state)

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Extract the fused layers and fit the fusion on them.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        y = _check_targets(y, type(self).__name__)
        extractor = LayerFeatureTransformer(
            self.model, layers=self.layers, pooling=self.pooling, cache=self.cache,
            batch_size=self.batch_size, device=self.device, tokenizer=self.tokenizer,
            max_length=self.max_length, preprocess=self.preprocess,
            n_threads=self.n_threads, verbose=self.verbose,
        ).set_output(transform="default")
        features = extractor.fit_transform(X)
        if features.shape[0] != y.shape[0]:
            raise ValueError(f"X has {features.shape[0]} samples but y has {y.shape[0]}.")
        for attribute in ("n_features_in_", "feature_names_in_"):
            if hasattr(extractor, attribute):
                setattr(self, attribute, getattr(extractor, attribute))
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.extractor_ = extractor  # one network per fit: prediction uses model_ too
        self.layer_names_ = list(extractor.layer_names_)
        with torch_threads(self.n_threads):
            # the user's estimators see the labels (a class_weight dict keyed
            # by them works); the weighted fusion fits class codes
            target = codes if self.fusion == "weighted" else y
            self.fusion_ = self._fuser().fit(features, extractor.feature_slices_, target)
        if self.fusion == "weighted":
            self.layer_weights_ = self.fusion_.params_["layer_weights"]
            self.n_iter_ = self.fusion_.params_["n_iter"]
        elif self.fusion == "concat":
            self.estimator_ = self.fusion_.estimator_
        else:
            self.estimators_ = self.fusion_.estimators_
            self.final_estimator_ = self.fusion_.final_estimator_
            self.stack_method_ = self.fusion_.stack_method_
        return self

    def _call(self, method, X):
        check_is_fitted(self)
        return self.fusion_.method(method)(self.extractor_.transform(X))

    def predict(self, X):
        """Predict class labels from the fused layers.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        predicted = self._call("predict", X)
        if self.fusion != "weighted":
            return predicted
        return self.classes_[np.asarray(predicted, dtype=int)]

    @available_if(_fusion_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the fused layers.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        return self._call("predict_proba", X)

    @available_if(_fusion_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the fused layers.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        return self._call("predict_log_proba", X)

    @available_if(_fusion_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the fused layers.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
            For two classes, the score of ``classes_[1]``.
        """
        return self._call("decision_function", X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags
