"""layer_sweep: every estimator on every layer, in and out of distribution, with its price."""

from numbers import Integral

import numpy as np
from sklearn.model_selection import check_cv
from sklearn.utils.multiclass import type_of_target

from .._extraction._progress import one_bar
from .._transformer import adapt_input, first_row
from ..heads import default_probe
from ..utils._compat import Interval, validate_params
from ..utils._optional import import_optional
from ._cost import forward_shares, seconds_per_row
from ._extractor import resolve_extractor
from ._ilr import default_regression_probe
from ._intervals import LayerScorer
from ._progress import fit_progress
from ._scoring import Splits, score_layers

COLUMNS = [
    "layer", "layer_index", "head", "split", "score", "score_std", "score_low",
    "score_high", "fit_time", "forward_share", "cost_unit", "seconds_per_row",
]


def _named_estimators(estimators, y):
    """``estimators`` as a dict of name -> estimator, checked."""
    if estimators is None:
        if type_of_target(y, input_name="y") == "continuous":
            return {"ridge": default_regression_probe()}
        return {"logistic": default_probe()}
    named = {}
    for pair in estimators:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], str)
                and hasattr(pair[1], "fit")):
            raise ValueError(
                "estimators must be a list of (name, estimator) tuples, as in "
                f"StackingClassifier; got the item {pair!r}."
            )
        name, estimator = pair
        if name in named:
            raise ValueError(f"estimators names must be unique; {name!r} appears twice.")
        named[name] = estimator
    if not named:
        raise ValueError("estimators is empty; pass at least one (name, estimator) or None.")
    return named


def _first_rows(X, n):
    """The first ``n`` rows of any input kind (for timing extraction)."""
    if isinstance(X, dict):
        return {k: v[:n] for k, v in X.items()}
    if hasattr(X, "iloc"):
        return X.iloc[:n]
    from torch.utils.data import Dataset, Subset

    if isinstance(X, Dataset):
        return Subset(X, range(min(n, len(X))))
    return X[:n]


@validate_params(
    {
        "extractor": "no_validation",
        "X": "no_validation",
        "y": ["array-like"],
        "layers": [str, Integral, list, tuple],
        "estimators": [None, list],
        "cv": [None, "cv_object"],
        "test_sets": [None, dict],
        "scoring": [None, str, callable],
        "n_bootstrap": [Interval(Integral, 0, None, closed="left")],
        "cost_sample": [Interval(Integral, 0, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [None, Integral],
        "verbose": ["verbose"],
    },
    prefer_skip_nested_validation=True,
)
def layer_sweep(
    extractor,
    X,
    y,
    *,
    layers="all",
    estimators=None,
    cv=None,
    test_sets=None,
    scoring=None,
    n_bootstrap=200,
    cost_sample=64,
    random_state=0,
    n_jobs=None,
    verbose=0,
):
    """Score every estimator on every layer, in and out of distribution, with each layer's cost.

    All layers are extracted in one forward pass over each distinct row (the
    activation cache serves repeated rows); the estimators are then fitted and
    scored on each layer's columns, in parallel over layers.

    Parameters
    ----------
    extractor : LayerFeatureTransformer or torch.nn.Module
        How features are extracted: a :class:`LayerFeatureTransformer`
        carrying every extraction setting (``pooling``, ``tokenizer``,
        ``preprocess``, ``cache``, ``batch_size``, ``device``, ...), or a
        network as shorthand for ``LayerFeatureTransformer(network)``. Never
        changed or fitted in place.
    X : array-like, tensor, DataFrame, dict, Dataset or list of str
        Training inputs.
    y : array-like of shape (n_samples,)
        Training labels.
    layers : str, int or list, default="all"
        Candidate layers (see :class:`LayerFeatureTransformer`); they replace
        the extractor's own ``layers``.
    estimators : list of (str, estimator) tuples, default=None
        Heads to fit on each layer, named as in
        :class:`~sklearn.ensemble.StackingClassifier`; the name is the
        table's ``head`` column. ``None`` is ``[("logistic", default_probe())]``
        for class labels and, for a continuous ``y``, ``[("ridge", probe)]``
        with the default probe of :class:`IntermediateLayerRegressor`.
    cv : int, cross-validation generator or None, default=None
        Cross-validation on ``X`` (split ``"cv"``). ``None`` means 5 folds when
        no ``test_sets`` are given and no cross-validation otherwise.
    test_sets : dict of str -> (X, y), default=None
        Held-out sets; each estimator is fitted on all of ``X`` and scored on each.
    scoring : str or callable, default=None
        ``None`` uses the estimator's ``score`` (accuracy for a classifier,
        ``r2`` for a regressor), for the score and its bootstrap interval alike.
    n_bootstrap : int, default=200
        Bootstrap resamples of each test set for the 95% interval
        (``score_low``, ``score_high``); 0 skips them. Cross-validation
        intervals are mean +- 1.96 standard errors over the folds.
    cost_sample : int, default=64
        Rows of ``X`` on which the extraction time per row of each layer alone
        (early exit, no cache) is measured; 0 skips the timing.
    random_state : int, RandomState or None, default=0
        Seeds the bootstrap (0: the same table on every run).
    n_jobs : int, default=None
        Layers scored in parallel (joblib).
    verbose : int, default=0
        1 or more: a progress bar over layers x estimators x splits. The
        extractor's own ``verbose`` shows the rows that go through the network.

    Returns
    -------
    table : pandas.DataFrame
        One row per layer x estimator x split with columns ``layer``,
        ``layer_index`` (network order), ``head`` (the estimator's name),
        ``split``, ``score``, ``score_std``, ``score_low``, ``score_high``
        (95% interval), ``fit_time`` (seconds per fit), ``forward_share``
        (share of a full forward pass spent to reach the layer), ``cost_unit``
        (``"flops"`` or ``"time"``: what the share counts) and
        ``seconds_per_row`` (measured extraction time of the layer alone; NaN
        with ``cost_sample=0``).

    See Also
    --------
    IntermediateLayerClassifier : Chooses a layer by the same scores.
    layer_metrics : Label-free metrics of every layer.
    LayerSweepDisplay : Plots the table.

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
    >>> bool((table["forward_share"] <= 1).all())
    True
    """
    pd = import_optional("pandas", purpose="layer_sweep (its table is a DataFrame)")
    y = np.asarray(y)
    named = _named_estimators(estimators, y)
    test_sets = dict(test_sets or {})
    if cv is None and not test_sets:
        cv = 5
    candidates = resolve_extractor(extractor, layers)
    rows = adapt_input(candidates, X)  # read and validated once
    with one_bar(bool(candidates.verbose)):
        features = candidates.fit_transform(rows)
        tests = {name: (candidates.transform(Xt), np.asarray(yt))
                 for name, (Xt, yt) in test_sets.items()}
    slices = candidates.feature_slices_
    splits = Splits(
        cv=None if cv is None else list(check_cv(cv, y, classifier=True).split(features, y)),
        tests=tests,
    )
    scorers = {name: LayerScorer(estimator, scoring) for name, estimator in named.items()}
    total = len(slices) * len(named) * splits.count()
    with fit_progress(verbose, total) as progress:
        table = score_layers(features, slices, y, named, scorers, splits, n_jobs=n_jobs,
                             n_bootstrap=n_bootstrap, random_state=random_state,
                             progress=progress)
    model = candidates.model_  # one network, even from a factory
    shares, unit = forward_shares(model, first_row(candidates, rows), list(slices))
    timing = {}
    if cost_sample:
        one = candidates.set_params(model=model)
        sample = adapt_input(one, _first_rows(X, cost_sample))
        timing = seconds_per_row(
            lambda layer: resolve_extractor(one, [layer], cache=None, verbose=0),
            sample, list(slices), n_rows=len(sample),
        )
    for row in table:
        row.pop("scores")
        row["forward_share"] = shares[row["layer"]]
        row["cost_unit"] = unit
        row["seconds_per_row"] = timing.get(row["layer"], np.nan)
    return pd.DataFrame(table, columns=COLUMNS)
