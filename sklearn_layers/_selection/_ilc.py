"""IntermediateLayerClassifier: a probe on the best (or cheapest good) layer."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.model_selection import check_cv
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._extraction._progress import one_bar
from .._transformer import adapt_input, first_row
from ..heads import default_probe
from ..metrics import get_layer_metric, get_layer_metric_names
from ..metrics._validation import stratified_rows
from ..utils._compat import HasMethods, Interval, _fit_context
from ..utils._repr import ReprMixin
from ._choice import choose_layer
from ._cost import forward_shares
from ._extractor import clone_selector, resolve_extractor
from ._intervals import LayerScorer
from ._progress import fit_progress
from ._scoring import Splits, score_layers
from ._targets import check_class_targets

_METRIC_SAMPLES = 2000  # rows a label-free metric reads (stratified, seed 0)


def _estimator_has(method):
    """``available_if`` check: the refitted estimator (or the one to fit) has ``method``."""

    def check(self):
        if hasattr(self, "estimator_"):
            return hasattr(self.estimator_, method)
        return hasattr(self._estimator(), method)

    return check


class IntermediateLayerClassifier(
    ReprMixin, ClassifierMixin, TransformerMixin, BaseEstimator
):
    """A probe on the best intermediate layer of a frozen network.

    ``fit`` extracts every candidate layer in one forward pass, fits a clone of
    ``estimator`` on each layer's features and scores it by cross-validation
    -- or, when ``X_val``/``y_val`` are given (a few samples of the shifted
    distribution, as in the intermediate-layer-classifier protocol), on them
    -- or ranks the layers by a label-free layer metric (``scoring="effective_rank"``
    ...). It keeps the best layer, or, with ``selection_tolerance``, the
    cheapest layer whose score is within that tolerance of the best, and
    refits the estimator on it. Afterwards ``predict`` and ``transform`` run
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
    estimator : classifier, default=None
        Fitted on each layer's features. ``None`` means :func:`default_probe`.
    cv : int, cross-validation generator or iterable, default=5
        Splits used to score each layer when no validation set is given.
    scoring : str or callable, default=None
        Score to maximise; ``None`` uses the estimator's ``score`` (accuracy).
        The name of a layer metric (:func:`sklearn_layers.metrics.get_layer_metric_names`:
        ``"effective_rank"``, ``"matrix_entropy"``, ``"twonn_dimension"``,
        ``"nc1"``, ``"knn_loo_accuracy"``) ranks the layers by that quantity on
        (at most 2,000 stratified rows of) the training features instead, in
        the direction the metric prefers, without fitting the estimator per
        layer; the label-free ones need no labels beyond those of ``fit``.
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
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during :term:`fit` (axis 1 of array input).
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    layer_sweep : Every head on every layer, as a table.
    LayerSweepDisplay : Plot of the score per layer.

    References
    ----------
    .. [1] "Intermediate Layer Classifiers for OOD Generalization", ICLR 2025.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import IntermediateLayerClassifier
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> ilc = IntermediateLayerClassifier(make_mlp(4, hidden=(32, 16)), cv=3).fit(X, y)
    >>> sorted(ilc.layer_scores_)
    ['1', '3', '4']
    >>> from sklearn_layers import LayerFeatureTransformer
    >>> lft = LayerFeatureTransformer(make_mlp(4, hidden=(32, 16)), pooling="mean", cache=None)
    >>> ilc = IntermediateLayerClassifier(lft, cv=3).fit(X, y)
    >>> sorted(ilc.layer_scores_)
    ['1', '3', '4']
    >>> ilc.best_layer_ in ilc.layer_scores_
    True
    >>> ilc.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "extractor": "no_validation",
        "layers": [str, Integral, list, tuple],
        "estimator": [None, HasMethods(["fit", "predict"])],
        "cv": ["cv_object"],
        "scoring": [None, str, callable],
        "selection_tolerance": [Interval(Real, 0, None, closed="left")],
        "refit": ["boolean"],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        extractor,
        *,
        layers="all",
        estimator=None,
        cv=5,
        scoring=None,
        selection_tolerance=0.0,
        refit=True,
        n_jobs=None,
        verbose=0,
    ):
        self.extractor = extractor
        self.layers = layers
        self.estimator = estimator
        self.cv = cv
        self.scoring = scoring
        self.selection_tolerance = selection_tolerance
        self.refit = refit
        self.n_jobs = n_jobs
        self.verbose = verbose

    def __sklearn_clone__(self):
        return clone_selector(self)

    def _estimator(self):
        return default_probe() if self.estimator is None else self.estimator

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, X_val=None, y_val=None):
        """Score every candidate layer, choose one, refit the estimator on it.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Training inputs.
        y : array-like of shape (n_samples,)
            Class labels.
        X_val, y_val : same kinds as X and y, default=None
            A small validation set (e.g. from the shifted distribution). When
            given, layers are scored on it instead of by cross-validation.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        if (X_val is None) != (y_val is None):
            raise ValueError("Pass both X_val and y_val, or neither.")
        y = check_class_targets(y, type(self).__name__)
        candidates = resolve_extractor(self.extractor, self.layers)
        rows = adapt_input(candidates, X)  # read and validated once for the whole fit
        if len(rows) != y.shape[0]:
            raise ValueError(f"X has {len(rows)} samples but y has {y.shape[0]}.")
        with one_bar(bool(candidates.verbose)):
            features = candidates.fit_transform(rows)
            validation = None if X_val is None else candidates.transform(X_val)
        for attribute in ("n_features_in_", "feature_names_in_"):
            if hasattr(candidates, attribute):
                setattr(self, attribute, getattr(candidates, attribute))
        # one network per fit, even from a factory: the chosen layer's
        # extractor takes the candidates' fitted network
        model = candidates.model_
        slices = candidates.feature_slices_
        self.layer_costs_, self.cost_unit_ = forward_shares(
            model, first_row(candidates, rows), list(slices)
        )
        metric = _layer_metric(self.scoring)
        if metric is not None:
            scores, stds, greater = self._score_by_metric(metric, features, slices, y)
            self.selection_ = "metric"
        else:
            scores, stds = self._score_by_fitting(features, slices, y, validation, y_val)
            greater = True
            self.selection_ = "cv" if X_val is None else "validation"
        self.layer_scores_, self.layer_score_std_ = scores, stds
        self.best_layer_ = choose_layer(
            scores, self.layer_costs_, tolerance=self.selection_tolerance,
            greater_is_better=greater, scoring=self.scoring,
        )
        self.best_score_ = float(scores[self.best_layer_])
        chosen = resolve_extractor(candidates.set_params(model=model), [self.best_layer_],
                                   prefetch=False)
        self.extractor_ = chosen.fit(rows)
        self.classes_ = np.unique(y)
        if self.refit:
            columns = slices[self.best_layer_]
            self.estimator_ = clone(self._estimator()).fit(features[:, columns], y)
            self.classes_ = self.estimator_.classes_
        return self

    def _score_by_fitting(self, features, slices, y, validation, y_val):
        estimator = self._estimator()
        scorer = LayerScorer(estimator, self.scoring)
        if validation is None:
            cv = check_cv(self.cv, y, classifier=True)
            splits = Splits(cv=list(cv.split(features, y)))
        else:
            splits = Splits(tests={"validation": (validation, np.asarray(y_val))})
        with fit_progress(self.verbose, len(slices) * splits.count()) as progress:
            rows = score_layers(features, slices, y, {"estimator": estimator},
                                {"estimator": scorer}, splits, n_jobs=self.n_jobs,
                                progress=progress)
        return ({r["layer"]: r["score"] for r in rows},
                {r["layer"]: r["score_std"] for r in rows})

    def _score_by_metric(self, metric, features, slices, y):
        # the same deterministic, stratified rows for every layer
        rows = stratified_rows(len(y), y, _METRIC_SAMPLES, random_state=0)
        values = {}
        for layer, cols in slices.items():
            F = features[rows][:, cols]
            try:
                values[layer] = float(metric.function(*((F, y[rows]) if metric.needs_y
                                                        else (F,))))
            except ValueError as exc:  # undefined on these features: never chosen
                warnings.warn(f"{self.scoring} is undefined on layer {layer!r}: {exc}",
                              RuntimeWarning, stacklevel=3)
                values[layer] = float("nan")
        return values, dict.fromkeys(values, 0.0), metric.greater_is_better

    def transform(self, X):
        """The chosen layer's pooled features.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        features : ndarray of shape (n_samples, n_features_best_layer)
        """
        check_is_fitted(self)
        return self.extractor_.transform(X)

    def get_feature_names_out(self, input_features=None):
        """Names of the chosen layer's features, ``"<layer>__<i>"``.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Ignored.

        Returns
        -------
        feature_names_out : ndarray of str objects
        """
        check_is_fitted(self)
        return self.extractor_.get_feature_names_out()

    def _refitted_features(self, X):
        check_is_fitted(self)
        if not hasattr(self, "estimator_"):
            raise ValueError("refit=False: no estimator was refitted; set refit=True to predict.")
        return self.extractor_.transform(X)

    def predict(self, X):
        """Predict class labels with the estimator on the chosen layer.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        features = self._refitted_features(X)
        return self.estimator_.predict(features)

    @available_if(_estimator_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities from the estimator on the chosen layer.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        features = self._refitted_features(X)
        return self.estimator_.predict_proba(features)

    @available_if(_estimator_has("predict_log_proba"))
    def predict_log_proba(self, X):
        """Log class probabilities from the estimator on the chosen layer.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        features = self._refitted_features(X)
        return self.estimator_.predict_log_proba(features)

    @available_if(_estimator_has("decision_function"))
    def decision_function(self, X):
        """Decision function of the estimator on the chosen layer.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        features = self._refitted_features(X)
        return self.estimator_.decision_function(features)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _layer_metric(scoring):
    """The layer metric ``scoring`` names, or None for an ordinary scorer."""
    if not isinstance(scoring, str):
        return None
    if scoring not in get_layer_metric_names():
        return None
    return get_layer_metric(scoring)
