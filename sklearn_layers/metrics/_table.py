"""layer_metrics: a table of layer metrics, from a model or from features."""

import time
from numbers import Integral

import numpy as np
import torch
from sklearn.utils import check_random_state, resample
from sklearn.utils.validation import check_array

from ._registry import get_layer_metric, get_layer_metric_names
from ._validation import check_labels, check_positive_int

_MIN_SAMPLES = 3


def _metric_names(metrics, has_y):
    if metrics is None:
        return [m for m in get_layer_metric_names() if has_y or not get_layer_metric(m).needs_y]
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for name in names:
        if get_layer_metric(name).needs_y and not has_y:
            raise ValueError(f"The metric {name!r} needs class labels; pass y.")
    if not names:
        raise ValueError("metrics is empty; name at least one metric or pass None.")
    return names


def _check_max_samples(max_samples):
    if max_samples is None:
        return None
    return check_positive_int(max_samples, "max_samples", minimum=_MIN_SAMPLES)


def _subsample(n_samples, y, max_samples, random_state):
    """Sorted row indices: all rows, or ``max_samples`` of them (stratified by y)."""
    if max_samples is None or max_samples >= n_samples:
        return np.arange(n_samples)
    picked = resample(
        np.arange(n_samples), replace=False, n_samples=max_samples,
        random_state=check_random_state(random_state), stratify=y,
    )
    return np.sort(picked)


def _n_rows(X):
    if isinstance(X, dict):
        return len(next(iter(X.values())))
    return len(X)


def _take_rows(X, rows):
    if isinstance(X, dict):
        return {key: _take_rows(value, rows) for key, value in X.items()}
    if isinstance(X, (list, tuple)):
        return [X[i] for i in rows]
    if hasattr(X, "iloc"):
        return X.iloc[rows]
    if isinstance(X, torch.utils.data.Dataset) and not isinstance(X, torch.Tensor):
        return torch.utils.data.Subset(X, rows.tolist())
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(rows)]
    return np.asarray(X)[rows]


def _as_table(rows):
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows)


def layer_metrics_from_features(
    features_by_layer,
    y=None,
    *,
    metrics=None,
    max_samples=2000,
    random_state=None,
    n_neighbors=5,
    working_memory=None,
):
    """Layer metrics of precomputed features, one row per layer.

    Parameters
    ----------
    features_by_layer : dict of str -> array-like of shape (n_samples, n_features)
        Each layer's features for the same samples, in the order the table
        should have (``layer_index``).
    y : array-like of shape (n_samples,), default=None
        Class labels; needed by ``nc1`` and ``knn_loo_accuracy``.
    metrics : str or list of str, default=None
        Names from :func:`~sklearn_layers.metrics.get_layer_metric_names`;
        ``None`` means every metric ``y`` allows (the label-free ones without
        ``y``).
    max_samples : int or None, default=2000
        Rows used: a random subset of this many (stratified by ``y`` when
        given), the same rows for every layer. ``None`` uses all. The
        neighbour-based metrics cost ``O(max_samples^2 n_features)`` time, the
        spectral ones ``O(max_samples n_features min(max_samples, n_features))``.
    random_state : int, RandomState instance or None, default=None
        Draws the subset.
    n_neighbors : int, default=5
        Neighbours of ``knn_loo_accuracy``.
    working_memory : float, default=None
        MiB per chunk of the distance, similarity and Gram computations;
        ``None`` uses ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    table : pandas.DataFrame or list of dict
        One row per layer with columns ``layer``, ``layer_index``,
        ``n_samples`` (rows used), ``n_features``, one column per metric, and
        ``seconds`` (time spent on that layer's metrics). A list of dicts
        when pandas is not installed.

    See Also
    --------
    layer_metrics : The same, extracting the features from a model.
    sklearn_layers.metrics.get_layer_metric : Each metric's definition,
        direction and label needs.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import layer_metrics_from_features
    >>> X, y = load_iris(return_X_y=True)
    >>> table = layer_metrics_from_features({"petals": X[:, 2:], "all": X}, y)
    >>> table[["layer", "n_features", "knn_loo_accuracy"]].round(3).values.tolist()
    [['petals', 2, 0.767], ['all', 4, 0.967]]
    """
    if not isinstance(features_by_layer, dict) or not features_by_layer:
        raise TypeError(
            "features_by_layer must be a non-empty dict of layer name -> 2-D "
            f"feature array; got {type(features_by_layer).__name__}."
        )
    names = _metric_names(metrics, has_y=y is not None)
    max_samples = _check_max_samples(max_samples)
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    sizes = {layer: _n_rows(F) for layer, F in features_by_layer.items()}
    n_samples = next(iter(sizes.values()))
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Every layer needs the same number of rows; got {sizes}.")
    if y is not None:
        check_labels(np.empty((n_samples, 0)), y)
        y = np.asarray(y)
    rows = _subsample(n_samples, y, max_samples, random_state)
    y_used = None if y is None else y[rows]
    table = []
    for index, (layer, F) in enumerate(features_by_layer.items()):
        F = check_array(np.asarray(F)[rows], dtype=[np.float64, np.float32],
                        ensure_min_samples=_MIN_SAMPLES, input_name=f"features of {layer!r}")
        start = time.perf_counter()
        values = {}
        for name in names:
            metric = get_layer_metric(name)
            options = {"working_memory": working_memory}
            if name == "knn_loo_accuracy":
                options["n_neighbors"] = n_neighbors
            args = (F, y_used) if metric.needs_y else (F,)
            values[name] = float(metric.function(*args, **options))
        table.append(
            {
                "layer": layer,
                "layer_index": index,
                "n_samples": len(rows),
                "n_features": F.shape[1],
                **values,
                "seconds": time.perf_counter() - start,
            }
        )
    return _as_table(table)


def layer_metrics(
    model,
    X,
    y=None,
    *,
    layers="all",
    pooling="auto",
    metrics=None,
    max_samples=2000,
    random_state=None,
    n_neighbors=5,
    cache="memory",
    batch_size=256,
    device="cpu",
    tokenizer=None,
    max_length=None,
    working_memory=None,
    verbose=0,
    n_threads=None,
):
    """Label-free (and, with ``y``, label-based) metrics of every layer.

    Draws at most ``max_samples`` rows of ``X`` first (stratified by ``y``
    when given), extracts every requested layer from them in one pass with
    :class:`~sklearn_layers.LayerFeatureTransformer`, then computes, layer by
    layer, the metrics of :func:`layer_metrics_from_features`:

    - ``effective_rank``: RankMe, ``exp`` of the entropy of the normalised
      singular values (:func:`~sklearn_layers.metrics.effective_rank`);
    - ``matrix_entropy``: entropy of the trace-normalised Gram matrix, divided
      by ``log(min(n, d))`` (:func:`~sklearn_layers.metrics.matrix_entropy`);
    - ``twonn_dimension``: TwoNN intrinsic dimension, maximum likelihood
      (:func:`~sklearn_layers.metrics.twonn_dimension`);
    - with ``y``, ``nc1``: within-class variability collapse
      (:func:`~sklearn_layers.metrics.nc1`), and ``knn_loo_accuracy``:
      leave-one-out cosine kNN accuracy
      (:func:`~sklearn_layers.metrics.knn_loo_accuracy`).

    Parameters
    ----------
    model : torch.nn.Module, fitted skorch net or callable
        The frozen network (see :class:`~sklearn_layers.LayerFeatureTransformer`).
    X : array-like, tensor, DataFrame, dict, Dataset or list of str
        Inputs, samples along axis 0.
    y : array-like of shape (n_samples,), default=None
        Class labels, for ``nc1`` and ``knn_loo_accuracy``.
    layers : str, int or list, default="all"
        Layers to measure (see :class:`~sklearn_layers.LayerFeatureTransformer`).
    pooling : str, int, callable or dict, default="auto"
        How activations become vectors.
    metrics : str or list of str, default=None
        Metric names; ``None`` means every metric ``y`` allows.
    max_samples : int or None, default=2000
        Rows used (see :func:`layer_metrics_from_features`); only these rows
        go through the network.
    random_state : int, RandomState instance or None, default=None
        Draws the rows.
    n_neighbors : int, default=5
        Neighbours of ``knn_loo_accuracy``.
    cache, batch_size, device, tokenizer, max_length, n_threads
        Passed to :class:`~sklearn_layers.LayerFeatureTransformer`.
    working_memory : float, default=None
        MiB per chunk of the metric computations.
    verbose : int, default=0
        ``>= 1`` shows the extraction's progress bar.

    Returns
    -------
    table : pandas.DataFrame or list of dict
        One row per layer, in network order: ``layer``, ``layer_index``,
        ``n_samples``, ``n_features``, one column per metric, ``seconds``
        (that layer's metric time). The extraction time of all layers
        together is in ``table.attrs["extraction_seconds"]``.

    See Also
    --------
    layer_metrics_from_features : The same from features you already have.
    layer_sweep : Probe accuracy per layer, in and out of distribution.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import layer_metrics
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> table = layer_metrics(make_mlp(4, hidden=(16, 8)), X, y, random_state=0)
    >>> table.columns.tolist()  # doctest: +NORMALIZE_WHITESPACE
    ['layer', 'layer_index', 'n_samples', 'n_features', 'effective_rank',
     'matrix_entropy', 'twonn_dimension', 'nc1', 'knn_loo_accuracy', 'seconds']
    >>> table[["layer", "n_samples", "n_features"]].values.tolist()
    [['1', 150, 16], ['3', 150, 8], ['4', 150, 3]]
    """
    from .._transformer import LayerFeatureTransformer

    _metric_names(metrics, has_y=y is not None)
    max_samples = _check_max_samples(max_samples)
    if isinstance(verbose, bool) or not isinstance(verbose, Integral):
        raise ValueError(f"verbose must be an int; got {verbose!r}.")
    n_samples = _n_rows(X)
    if y is not None:
        check_labels(np.empty((n_samples, 0)), y)
        y = np.asarray(y)
    rows = _subsample(n_samples, y, max_samples, random_state)
    if len(rows) < n_samples:
        X = _take_rows(X, rows)
        y = None if y is None else y[rows]
    extractor = LayerFeatureTransformer(
        model, layers=layers, pooling=pooling, batch_size=batch_size, device=device,
        cache=cache, tokenizer=tokenizer, max_length=max_length, verbose=verbose >= 1,
        n_threads=n_threads,
    )
    start = time.perf_counter()
    features = extractor.fit_transform(X)
    extraction_seconds = time.perf_counter() - start
    table = layer_metrics_from_features(
        {layer: features[:, cols] for layer, cols in extractor.feature_slices_.items()},
        y, metrics=metrics, max_samples=None, n_neighbors=n_neighbors,
        working_memory=working_memory,
    )
    if hasattr(table, "attrs"):
        table.attrs["extraction_seconds"] = extraction_seconds
    return table
