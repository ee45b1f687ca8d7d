"""LayerFusionClassifier: one classifier over several layers of a frozen network."""

from numbers import Integral

from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._extraction._progress import one_bar
from .._transformer import adapt_input
from ..utils._compat import HasMethods, _fit_context
from ..utils._repr import ReprMixin
from ..utils._threads import torch_threads
from ._extractor import clone_selector, resolve_extractor
from ._fusion_modes import StackingFusion
from ._targets import check_class_targets


def _fusion_has(method):
    """``available_if`` check: the fitted (or configured) fusion answers ``method``."""

    def check(self):
        fusion = getattr(self, "fusion_", None)
        return hasattr(fusion if fusion is not None else self._fusion(), method)

    return check


class LayerFusionClassifier(ReprMixin, ClassifierMixin, BaseEstimator):
    """A classifier over several layers of a frozen network at once.

    ``fit`` extracts every fused layer in one forward pass per row (through the
    shared activation cache, so a grid over ``fusion`` and ``layers`` runs each
    row through the network once) and combines the layers as the ``fusion``
    strategy says:

    - :class:`StackingFusion` (the default): one probe per layer, combined by
      a final estimator trained on their cross-fitted outputs, as
      :class:`~sklearn.ensemble.StackingClassifier` does. In the package's
      benchmark on three distribution shifts it was the most reliable way to
      use many layers (never the worst method, above the last layer on most
      shifted sets);
    - :class:`ConcatFusion`: the layers side by side, into one probe;
    - :class:`WeightedFusion`: a learned softmax weight per layer and a
      logistic head (the weighted sum of the SUPERB protocol). Its weights
      ended on one layer in every fit of that benchmark.

    Each strategy carries its own parameters (``fusion__cv``, ``fusion__C``
    in a grid) and its own fitted attributes, on ``fusion_``.

    Parameters
    ----------
    extractor : LayerFeatureTransformer or torch.nn.Module
        How features are extracted: a :class:`LayerFeatureTransformer`
        carrying every extraction setting (``pooling``, ``tokenizer``,
        ``preprocess``, ``cache``, ``batch_size``, ``device``, ...; a grid
        reaches them as ``extractor__pooling``), or a network as shorthand for
        ``LayerFeatureTransformer(network)``. Never changed or fitted in
        place: ``fit`` works on a clone over ``layers``.
    layers : str, int or list, default="all"
        The layers to fuse (see :class:`LayerFeatureTransformer`); they
        replace the extractor's own ``layers``.
    fusion : StackingFusion, ConcatFusion or WeightedFusion, default=None
        How the layers are combined; ``None`` means ``StackingFusion()``.
        Cloned at ``fit``.

    Attributes
    ----------
    fusion_ : StackingFusion, ConcatFusion or WeightedFusion
        The fitted strategy, with its own attributes (``estimators_`` and
        ``final_estimator_``; ``estimator_``; ``layer_weights_``).
    layer_names_ : list of str
        The fused layers, in the order of their features.
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
    LayerWeightsDisplay : Plot of a weighted fusion's ``layer_weights_``.
    sklearn.ensemble.StackingClassifier : What stacking does, per layer.

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
    >>> from sklearn_layers import LayerFusionClassifier, WeightedFusion
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> net = make_mlp(4, hidden=(16, 16))
    >>> stacked = LayerFusionClassifier(net, layers=["1", "3"]).fit(X, y)
    >>> stacked.layer_names_
    ['1', '3']
    >>> stacked.predict(X[:3]).shape
    (3,)
    >>> weighted = LayerFusionClassifier(net, layers=["1", "3"],
    ...                                  fusion=WeightedFusion(random_state=0)).fit(X, y)
    >>> weighted.fusion_.layer_weights_.shape
    (2,)
    """

    _parameter_constraints: dict = {
        "extractor": "no_validation",
        "layers": [str, Integral, list, tuple],
        "fusion": [None, HasMethods(["fit", "predict"])],
    }

    def __init__(self, extractor, *, layers="all", fusion=None):
        self.extractor = extractor
        self.layers = layers
        self.fusion = fusion

    def __sklearn_clone__(self):
        return clone_selector(self)

    def _fusion(self):
        return StackingFusion() if self.fusion is None else self.fusion

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
        y = check_class_targets(y, type(self).__name__)
        extractor = resolve_extractor(self.extractor, self.layers)
        rows = adapt_input(extractor, X)
        if len(rows) != y.shape[0]:
            raise ValueError(f"X has {len(rows)} samples but y has {y.shape[0]}.")
        with one_bar(bool(extractor.verbose)):
            features = extractor.fit_transform(rows)
        for attribute in ("n_features_in_", "feature_names_in_"):
            if hasattr(extractor, attribute):
                setattr(self, attribute, getattr(extractor, attribute))
        self.extractor_ = extractor  # one network per fit: prediction uses model_ too
        self.layer_names_ = list(extractor.layer_names_)
        with torch_threads(extractor.n_threads):
            self.fusion_ = clone(self._fusion()).fit(features, extractor.feature_slices_, y)
        self.classes_ = self.fusion_.classes_
        return self

    def _call(self, method, X):
        check_is_fitted(self)
        return getattr(self.fusion_, method)(self.extractor_.transform(X))

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
        return self._call("predict", X)

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
