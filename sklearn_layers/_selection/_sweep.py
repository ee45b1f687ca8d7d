"""layer_sweep: every head on every layer, in and out of distribution, with its price."""

import numpy as np
from sklearn.metrics import check_scoring
from sklearn.model_selection import check_cv

from .._extraction._progress import one_bar
from .._transformer import LayerFeatureTransformer
from ..heads import default_probe
from ..utils._optional import import_optional
from ._cost import forward_shares, seconds_per_row
from ._progress import fit_progress
from ._scoring import Splits, score_layers

COLUMNS = [
    "layer", "layer_index", "head", "split", "score", "score_std", "score_low",
    "score_high", "fit_time", "forward_share", "cost_unit", "seconds_per_row",
]


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


def _n_rows(X):
    if isinstance(X, dict):
        return len(next(iter(X.values())))
    return len(X)


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
    n_bootstrap=200,
    cost_sample=64,
    random_state=0,
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
    """Score every head on every layer, in and out of distribution, with each layer's cost.

    All layers are extracted in one forward pass over each distinct row (the
    activation cache serves repeated rows); the heads are then fitted and
    scored on each layer's columns, in parallel over layers.

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
        Heads to fit on each layer; ``None`` is :func:`default_probe`, named
        ``"logistic"``.
    pooling : str, int, callable or dict, default="auto"
        See :class:`LayerFeatureTransformer`.
    cv : int, cross-validation generator or None, default=None
        Cross-validation on ``X`` (split ``"cv"``). ``None`` means 5 folds when
        no ``test_sets`` are given and no cross-validation otherwise.
    test_sets : dict of str -> (X, y), default=None
        Held-out sets; each head is fitted on all of ``X`` and scored on each.
    scoring : str or callable, default=None
        ``None`` uses the head's ``score`` (accuracy).
    n_bootstrap : int, default=200
        Bootstrap resamples of each test set for the 95% interval
        (``score_low``, ``score_high``); 0 skips them. Cross-validation
        intervals are mean +- 1.96 standard errors over the folds.
    cost_sample : int, default=64
        Rows of ``X`` on which the extraction time per row of each layer alone
        (early exit, no cache) is measured; 0 skips the timing.
    random_state : int, RandomState or None, default=0
        Seeds the bootstrap.
    cache, batch_size, device, tokenizer, max_length, preprocess, n_threads
        Passed to :class:`LayerFeatureTransformer`.
    n_jobs : int, default=None
        Layers scored in parallel (joblib).
    verbose : int, default=0
        1 or more: a progress bar over the rows that go through the network
        and one over layers x heads x splits.

    Returns
    -------
    table : pandas.DataFrame
        One row per layer x head x split with columns ``layer``,
        ``layer_index`` (network order), ``head``, ``split``, ``score``,
        ``score_std``, ``score_low``, ``score_high`` (95% interval),
        ``fit_time`` (seconds per fit), ``forward_share`` (share of a full
        forward pass spent to reach the layer), ``cost_unit`` (``"flops"`` or
        ``"time"``: what the share counts) and ``seconds_per_row`` (measured
        extraction time of the layer alone; NaN with ``cost_sample=0``).

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
    named_heads = _named_heads(heads)
    test_sets = dict(test_sets or {})
    if cv is None and not test_sets:
        cv = 5
    y = np.asarray(y)
    extraction = dict(pooling=pooling, cache=cache, batch_size=batch_size, device=device,
                      tokenizer=tokenizer, max_length=max_length, preprocess=preprocess,
                      n_threads=n_threads, verbose=verbose)
    lft = LayerFeatureTransformer(model, layers=layers, **extraction)
    lft.set_output(transform="default")
    with one_bar(verbose):
        features = lft.fit_transform(X)
        tests = {name: (lft.transform(Xt), np.asarray(yt)) for name, (Xt, yt) in test_sets.items()}
    slices = lft.feature_slices_
    splits = Splits(
        cv=None if cv is None else list(check_cv(cv, y, classifier=True).split(features, y)),
        tests=tests,
    )
    scorers = {name: check_scoring(head, scoring=scoring) for name, head in named_heads.items()}
    total = len(slices) * len(named_heads) * splits.count()
    with fit_progress(verbose, total) as progress:
        rows = score_layers(features, slices, y, named_heads, scorers, splits, n_jobs=n_jobs,
                            n_bootstrap=n_bootstrap, random_state=random_state,
                            progress=progress)
    shares, unit = forward_shares(lft.model_, lft._one_row(X), list(slices))
    timing = {}
    if cost_sample:
        sample = _first_rows(X, cost_sample)
        one = dict(extraction, cache=None, verbose=0)
        timing = seconds_per_row(
            lambda layer: LayerFeatureTransformer(lft.model_, layers=[layer], **one),
            sample, list(slices), n_rows=_n_rows(sample),
        )
    for row in rows:
        row.pop("scores")
        row["forward_share"] = shares[row["layer"]]
        row["cost_unit"] = unit
        row["seconds_per_row"] = timing.get(row["layer"], np.nan)
    return pd.DataFrame(rows, columns=COLUMNS)
