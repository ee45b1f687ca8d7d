"""What the intermediate-layer classifier and regressor share: choose a layer, refit on it."""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils.validation import check_is_fitted

from .._extraction._progress import one_bar
from .._transformer import adapt_input, first_row
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

_METRIC_SAMPLES = 2000  # rows a label-free metric reads (stratified, seed 0)


class BaseIntermediateLayer(ReprMixin, TransformerMixin, BaseEstimator):
    """Score every candidate layer, keep the best (or cheapest good) one, refit on it.

    Subclasses say what the targets are (``_check_targets``, ``_set_targets``)
    and which estimator ``estimator=None`` means (``_default_estimator``).
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
        return self._default_estimator() if self.estimator is None else self.estimator

    def _set_targets(self, y):
        """Fitted attributes describing the targets (``classes_`` for a classifier)."""

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, X_val=None, y_val=None):
        """Score every candidate layer, choose one, refit the estimator on it.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Training inputs.
        y : array-like of shape (n_samples,)
            Targets: class labels for the classifier, numbers for the regressor.
        X_val, y_val : same kinds as X and y, default=None
            A small validation set (e.g. from the shifted distribution). When
            given, layers are scored on it instead of by cross-validation.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        if (X_val is None) != (y_val is None):
            raise ValueError("Pass both X_val and y_val, or neither.")
        y = self._check_targets(y)
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
        if self.refit:
            columns = slices[self.best_layer_]
            self.estimator_ = clone(self._estimator()).fit(features[:, columns], y)
        self._set_targets(y)
        return self

    def _score_by_fitting(self, features, slices, y, validation, y_val):
        estimator = self._estimator()
        scorer = LayerScorer(estimator, self.scoring)
        if validation is None:
            cv = check_cv(self.cv, y, classifier=is_classifier(self))
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
        if metric.needs_y and not is_classifier(self):
            raise ValueError(
                f"scoring={self.scoring!r} needs class labels; a regressor's layers "
                "can be ranked by a label-free metric or by fitting the estimator."
            )
        # the same deterministic rows for every layer (stratified by class)
        strata = y if is_classifier(self) else None
        rows = stratified_rows(len(y), strata, _METRIC_SAMPLES, random_state=0)
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
        """Predict with the estimator on the chosen layer.

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
