"""IntermediateLayerRegressor: a regression probe on the best (or cheapest good) layer."""

from sklearn.base import RegressorMixin
from sklearn.utils.validation import check_array, column_or_1d

from ..heads import default_probe
from ._base_layer import BaseIntermediateLayer


class IntermediateLayerRegressor(RegressorMixin, BaseIntermediateLayer):
    """A regression probe on the best intermediate layer of a frozen network.

    ``fit`` extracts every candidate layer in one forward pass, fits a clone of
    ``estimator`` on each layer's features and scores it by cross-validation
    -- or, when ``X_val``/``y_val`` are given (a few samples of the shifted
    distribution, as in the intermediate-layer-classifier protocol), on them
    -- or ranks the layers by a label-free layer metric
    (``scoring="effective_rank"`` ...). It keeps the best layer, or, with
    ``selection_tolerance``, the cheapest layer whose score is within that
    tolerance of the best, and refits the estimator on it. Afterwards ``predict`` and ``transform`` run
    the network only up to the chosen layer.

    Parameters
    ----------
    extractor : LayerFeatureTransformer or torch.nn.Module
        How features are extracted: a :class:`LayerFeatureTransformer`
        carrying every extraction setting (``pooling``, ``tokenizer``,
        ``preprocess``, ``cache``, ``batch_size``, ``device``, ...; a grid
        reaches them as ``extractor__pooling``), or a network (a module, a
        :class:`FrozenModel`, a fitted skorch net or a factory) as shorthand
        for ``LayerFeatureTransformer(network)``. Never changed or fitted in
        place: ``fit`` works on a clone over ``layers`` (sharing the network
        and the cache).
    layers : str, int or list, default="all"
        Candidate layers (see :class:`LayerFeatureTransformer`); they replace
        the extractor's own ``layers``.
    estimator : regressor, default=None
        Fitted on each layer's features. ``None`` means
        ``default_probe("regression")``, a :class:`LinearProbeRegressor`: a
        ridge regression on standardised features whose penalty is chosen by
        exact leave-one-out cross-validation, as ``RidgeCV`` chooses it.
    cv : int, cross-validation generator or iterable, default=5
        Splits used to score each layer when no validation set is given
        (an int is that many unshuffled ``KFold`` folds).
    scoring : str or callable, default=None
        Score to maximise; ``None`` uses the estimator's ``score`` (``r2``).
        The name of a label-free layer metric (``"effective_rank"``,
        ``"matrix_entropy"``, ``"twonn_dimension"``) ranks the layers by that
        quantity on (at most 2,000 rows of) the training features instead, in
        the direction the metric prefers, without fitting the estimator per
        layer.
    selection_tolerance : float, default=0.0
        Choose the cheapest layer (the smallest share of a full forward pass,
        ``layer_costs_``) whose score is at least the best score minus this.
        0 chooses the best-scoring layer.
    refit : bool, default=True
        Refit the estimator on the chosen layer over all of ``X``.
    n_jobs : int, default=None
        Layers scored in parallel (joblib).
    verbose : int, default=0
        1 or more: a progress bar over layers x folds. The extractor's own
        ``verbose`` shows the rows that go through the network.

    Attributes
    ----------
    layer_scores_ : dict
        Layer name -> mean score (or metric value).
    layer_score_std_ : dict
        Layer name -> standard deviation over folds (0 otherwise).
    layer_costs_ : dict
        Layer name -> share of a full forward pass spent to reach it.
    cost_unit_ : {"flops", "time"}
        What ``layer_costs_`` counts.
    best_layer_ : str
        The chosen layer.
    best_score_ : float
        Its score.
    selection_ : {"cv", "validation", "metric"}
        How the layers were scored.
    estimator_ : estimator
        The estimator refitted on the chosen layer (when ``refit=True``).
    extractor_ : LayerFeatureTransformer
        Extracts the chosen layer's features, with early exit (a fitted clone
        of ``extractor`` over ``[best_layer_]`` with ``prefetch=False``).
    n_features_in_ : int
        Number of features seen during :term:`fit` (axis 1 of array input).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    IntermediateLayerClassifier : The same for class labels.
    layer_sweep : Every head on every layer, as a table.
    LayerSweepDisplay : Plot of the score per layer.

    References
    ----------
    .. [1] "Intermediate Layer Classifiers for OOD Generalization", ICLR 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn_layers import IntermediateLayerRegressor
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_diabetes(return_X_y=True)
    >>> ilr = IntermediateLayerRegressor(make_mlp(10, hidden=(32, 16)), cv=3).fit(X, y)
    >>> sorted(ilr.layer_scores_)
    ['1', '3', '4']
    >>> ilr.predict(X[:3]).shape
    (3,)
    """

    def _default_estimator(self):
        return default_probe("regression")

    def _check_targets(self, y):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = check_array(y, ensure_2d=False, dtype="numeric", input_name="y")
        return column_or_1d(y, warn=True)
