"""Choosing a layer: IntermediateLayerClassifier and layer_sweep."""

import time
from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv, cross_validate
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from ._transformer import EXTRACTION_CONSTRAINTS, LayerFeatureTransformer, clone_sharing
from .heads._linear_probe import default_probe
from .utils._compat import HasMethods, _fit_context


def _extractor(model, layers, params):
    return LayerFeatureTransformer(model, layers=layers, **params)


class IntermediateLayerClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """A probe on the best intermediate layer of a frozen network.

    ``fit`` extracts every candidate layer in one forward pass, fits a clone of
    ``head`` on each layer's features, scores each by cross-validation -- or,
    when ``X_val``/``y_val`` are given (a few samples of the shifted
    distribution, as in the intermediate-layer-classifier protocol), on them --
    keeps the best layer and refits the head on all of ``X``.

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch net or callable
        The frozen network (see :class:`LayerFeatureTransformer`).
    layers : str, int or list, default="all"
        Candidate layers (see :class:`LayerFeatureTransformer`).
    head : classifier, default=None
        Fitted on each layer's features. ``None`` means
        ``make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))``.
    pooling : str, int, callable or dict, default="auto"
        How activations become vectors (see :class:`LayerFeatureTransformer`).
    cv : int, cross-validation generator or iterable, default=5
        Splits used to score each layer when no validation set is given.
    scoring : str or callable, default=None
        Score to maximise; ``None`` uses the head's ``score`` (accuracy).
    refit : bool, default=True
        Refit the head on the best layer over all of ``X``.
    cache : "memory", path, cache object or None, default="memory"
        Activation cache (see :class:`LayerFeatureTransformer`).
    batch_size : int, default=256
        Rows per forward pass.
    device : str, default="cpu"
        Where input batches are sent.
    tokenizer : callable, default=None
        Tokenizer for text input.
    n_jobs : int, default=None
        Parallel jobs of the per-layer cross-validation.
    verbose : bool, default=False
        Progress bar while extracting.

    Attributes
    ----------
    layer_scores_ : dict
        Layer name -> mean score.
    layer_score_std_ : dict
        Layer name -> standard deviation over folds (0 with a validation set).
    best_layer_ : str
        The layer with the highest score (the first one on ties).
    selection_ : {"cv", "validation"}
        How the layers were scored.
    head_ : estimator
        The head refitted on the best layer (when ``refit=True``).
    extractor_ : LayerFeatureTransformer
        Extracts the best layer's features.
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
    >>> ilc.best_layer_ in ilc.layer_scores_
    True
    >>> ilc.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints: dict = {
        "model": "no_validation",
        **EXTRACTION_CONSTRAINTS,
        "head": [None, HasMethods(["fit", "predict"])],
        "cv": ["cv_object"],
        "scoring": [None, str, callable],
        "refit": ["boolean"],
        "n_jobs": [None, Integral],
    }

    def __init__(
        self,
        model,
        *,
        layers="all",
        head=None,
        pooling="auto",
        cv=5,
        scoring=None,
        refit=True,
        cache="memory",
        batch_size=256,
        device="cpu",
        tokenizer=None,
        n_jobs=None,
        verbose=False,
    ):
        self.model = model
        self.layers = layers
        self.head = head
        self.pooling = pooling
        self.cv = cv
        self.scoring = scoring
        self.refit = refit
        self.cache = cache
        self.batch_size = batch_size
        self.device = device
        self.tokenizer = tokenizer
        self.n_jobs = n_jobs
        self.verbose = verbose

    def __sklearn_clone__(self):
        return clone_sharing(self)

    def _extractor_params(self):
        return dict(
            pooling=self.pooling,
            cache=self.cache,
            batch_size=self.batch_size,
            device=self.device,
            tokenizer=self.tokenizer,
            verbose=self.verbose,
        )

    def _head(self):
        return default_probe() if self.head is None else self.head

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, *, X_val=None, y_val=None):
        """Score every candidate layer, keep the best, refit the head on it.

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
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None."
            )
        y = column_or_1d(check_array(y, ensure_2d=False, dtype=None, input_name="y"),
                         warn=True)
        check_classification_targets(y)
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"IntermediateLayerClassifier needs at least 2 classes; got "
                f"{len(np.unique(y))} class: {np.unique(y)}."
            )
        params = self._extractor_params()
        candidates = _extractor(self.model, self.layers, params)
        features = candidates.fit_transform(X)
        if features.shape[0] != y.shape[0]:
            raise ValueError(
                f"X has {features.shape[0]} samples but y has {y.shape[0]}."
            )
        for attribute in ("n_features_in_", "feature_names_in_"):
            if hasattr(candidates, attribute):
                setattr(self, attribute, getattr(candidates, attribute))
        columns = candidates.feature_slices_
        head = self._head()
        scorer = check_scoring(head, scoring=self.scoring)
        self.layer_scores_, self.layer_score_std_ = {}, {}
        self.selection_ = "cv" if X_val is None else "validation"
        if X_val is not None:
            val_features = candidates.transform(X_val)
            y_val = np.asarray(y_val)
            for name, cols in columns.items():
                fitted = clone(head).fit(features[:, cols], y)
                self.layer_scores_[name] = float(scorer(fitted, val_features[:, cols], y_val))
                self.layer_score_std_[name] = 0.0
        else:
            cv = check_cv(self.cv, y, classifier=True)
            for name, cols in columns.items():
                result = cross_validate(
                    clone(head), features[:, cols], y, cv=cv, scoring=scorer,
                    n_jobs=self.n_jobs,
                )
                self.layer_scores_[name] = float(np.mean(result["test_score"]))
                self.layer_score_std_[name] = float(np.std(result["test_score"]))
        names = list(columns)
        self.best_layer_ = names[int(np.argmax([self.layer_scores_[n] for n in names]))]
        self.extractor_ = _extractor(self.model, [self.best_layer_], params)
        self.extractor_.fit(X)
        self.classes_ = np.unique(y)
        if self.refit:
            self.head_ = clone(head).fit(features[:, columns[self.best_layer_]], y)
            self.classes_ = self.head_.classes_
        return self

    def transform(self, X):
        """The best layer's pooled features.

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
        """Names of the best layer's features, ``"<layer>__<i>"``.

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

    def _check_refit(self):
        check_is_fitted(self)
        if not hasattr(self, "head_"):
            raise ValueError("refit=False: no head was refitted; set refit=True to predict.")

    def predict(self, X):
        """Predict class labels with the head on the best layer.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        self._check_refit()
        return self.head_.predict(self.transform(X))

    def predict_proba(self, X):
        """Class probabilities from the head on the best layer.

        Parameters
        ----------
        X : array-like, tensor, DataFrame, dict, Dataset or list of str
            Inputs.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        self._check_refit()
        return self.head_.predict_proba(self.transform(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


ILC = IntermediateLayerClassifier


def _named_heads(heads):
    if heads is None:
        return {"logistic": default_probe()}
    if isinstance(heads, dict):
        return dict(heads)
    named = {}
    for head in heads:
        name = type(head).__name__
        if name == "Pipeline":
            name = type(head.steps[-1][1]).__name__
        base, k = name, 2
        while name in named:
            name, k = f"{base}_{k}", k + 1
        named[name] = head
    return named


def layer_sweep(
    model,
    X,
    y,
    *,
    layers="all",
    heads=None,
    pooling="auto",
    cv=None,
    test_sets=None,
    scoring=None,
    cache="memory",
    batch_size=256,
    device="cpu",
    tokenizer=None,
    n_jobs=None,
    verbose=False,
):
    """Score every head on every layer, in and out of distribution.

    All layers are extracted in one forward pass over each distinct row (the
    activation cache serves repeated rows).

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch net or callable
        The frozen network.
    X : array-like, tensor, DataFrame, dict, Dataset or list of str
        Training inputs.
    y : array-like of shape (n_samples,)
        Training labels.
    layers : str, int or list, default="all"
        Candidate layers (see :class:`LayerFeatureTransformer`).
    heads : dict of str -> classifier or list of classifiers, default=None
        Heads to fit on each layer; ``None`` is the default probe
        (standardise, then logistic regression).
    pooling : str, int, callable or dict, default="auto"
        See :class:`LayerFeatureTransformer`.
    cv : int, cross-validation generator or None, default=None
        Cross-validation on ``X`` (split ``"cv"``). ``None`` means 5 folds when
        no ``test_sets`` are given and no cross-validation otherwise.
    test_sets : dict of str -> (X, y), default=None
        Held-out sets; each head is fitted on all of ``X`` and scored on each.
    scoring : str or callable, default=None
        ``None`` uses the head's ``score`` (accuracy).
    cache, batch_size, device, tokenizer, verbose
        Passed to :class:`LayerFeatureTransformer`.
    n_jobs : int, default=None
        Parallel jobs of the cross-validation.

    Returns
    -------
    table : pandas.DataFrame or list of dict
        One row per layer x head x split with columns ``layer``,
        ``layer_index`` (network order), ``head``, ``split``, ``score``,
        ``score_std`` and ``fit_time`` (seconds). A DataFrame when pandas is
        installed.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import layer_sweep
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> table = layer_sweep(make_mlp(4, hidden=(32,)), X[::2], y[::2],
    ...                     test_sets={"odd rows": (X[1::2], y[1::2])})
    >>> table[["layer", "head", "split"]].values.tolist()
    [['1', 'logistic', 'odd rows'], ['2', 'logistic', 'odd rows']]
    """
    named_heads = _named_heads(heads)
    test_sets = dict(test_sets or {})
    if cv is None and not test_sets:
        cv = 5
    y = np.asarray(y)
    lft = LayerFeatureTransformer(
        model, layers=layers, pooling=pooling, cache=cache, batch_size=batch_size,
        device=device, tokenizer=tokenizer, verbose=verbose,
    )
    features = lft.fit_transform(X)
    tests = {name: (lft.transform(Xt), np.asarray(yt)) for name, (Xt, yt) in test_sets.items()}
    columns = lft.feature_slices_
    scorers = {name: check_scoring(head, scoring=scoring) for name, head in named_heads.items()}
    splitter = None if cv is None else check_cv(cv, y, classifier=True)
    rows = []
    for index, (layer, cols) in enumerate(columns.items()):
        for head_name, head in named_heads.items():
            scorer = scorers[head_name]
            if splitter is not None:
                result = cross_validate(
                    clone(head), features[:, cols], y, cv=splitter, scoring=scorer,
                    n_jobs=n_jobs,
                )
                rows.append(_row(layer, index, head_name, "cv", result["test_score"],
                                 float(np.mean(result["fit_time"]))))
            if tests:
                start = time.perf_counter()
                fitted = clone(head).fit(features[:, cols], y)
                fit_time = time.perf_counter() - start
                for split, (Ft, yt) in tests.items():
                    score = scorer(fitted, Ft[:, cols], yt)
                    rows.append(_row(layer, index, head_name, split, [score], fit_time))
    return _as_table(rows)


def _row(layer, index, head, split, scores, fit_time):
    return {
        "layer": layer,
        "layer_index": index,
        "head": head,
        "split": split,
        "score": float(np.mean(scores)),
        "score_std": float(np.std(scores)),
        "fit_time": float(fit_time),
    }


def _as_table(rows):
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=list(_row("", 0, "", "", [0.0], 0.0)))
