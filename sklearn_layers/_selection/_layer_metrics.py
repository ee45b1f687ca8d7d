"""layer_metrics: label-free (and label-based) metrics of every layer of a network."""

import time

import numpy as np
import torch

from .._transformer import adapt_input
from ..metrics import layer_metrics_from_features
from ..metrics._table import check_max_samples, metric_names
from ..metrics._validation import check_labels, stratified_rows
from ._extractor import resolve_extractor


def _n_rows(X):
    if isinstance(X, dict):
        return len(next(iter(X.values())))
    return len(X)


def _take_rows(X, rows):
    """The rows ``rows`` (positions) of any input kind."""
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


def layer_metrics(
    extractor,
    X,
    y=None,
    *,
    layers="all",
    metrics=None,
    max_samples=2000,
    random_state=None,
    n_neighbors=5,
    working_memory=None,
):
    """Label-free (and, with ``y``, label-based) metrics of every layer.

    Draws at most ``max_samples`` rows of ``X`` first (stratified by ``y``
    when given), extracts every requested layer from them in one pass with
    the extractor, then computes, layer by layer, the metrics of
    :func:`layer_metrics_from_features`:

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

    A dead layer (every row the same) gets NaN metrics with a warning; the
    other layers' rows stand.

    Parameters
    ----------
    extractor : LayerFeatureTransformer or torch.nn.Module
        How features are extracted: a :class:`LayerFeatureTransformer`
        carrying every extraction setting (``pooling``, ``tokenizer``,
        ``preprocess``, ``cache``, ``batch_size``, ``device``, ``verbose``,
        ...), or a network as shorthand for ``LayerFeatureTransformer(network)``.
        Never changed or fitted in place.
    X : array-like, tensor, DataFrame, dict, Dataset or list of str
        Inputs, samples along axis 0.
    y : array-like of shape (n_samples,), default=None
        Class labels, for ``nc1`` and ``knn_loo_accuracy``.
    layers : str, int or list, default="all"
        Layers to measure (see :class:`~sklearn_layers.LayerFeatureTransformer`);
        they replace the extractor's own ``layers``.
    metrics : str or list of str, default=None
        Metric names; ``None`` means every metric ``y`` allows.
    max_samples : int or None, default=2000
        Rows used (see :func:`layer_metrics_from_features`); only these rows
        go through the network.
    random_state : int, RandomState instance or None, default=None
        Draws the rows.
    n_neighbors : int, default=5
        Neighbours of ``knn_loo_accuracy``.
    working_memory : float, default=None
        MiB per chunk of the metric computations.

    Returns
    -------
    table : pandas.DataFrame
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
    metric_names(metrics, has_y=y is not None)
    max_samples = check_max_samples(max_samples)
    n_samples = _n_rows(X)
    if y is not None:
        check_labels(np.empty((n_samples, 0)), y)
        y = np.asarray(y)
    rows = stratified_rows(n_samples, y, max_samples, random_state)
    if len(rows) < n_samples:
        X = _take_rows(X, rows)
        y = None if y is None else y[rows]
    candidates = resolve_extractor(extractor, layers)
    start = time.perf_counter()
    features = candidates.fit_transform(adapt_input(candidates, X))
    extraction_seconds = time.perf_counter() - start
    table = layer_metrics_from_features(
        {layer: features[:, cols] for layer, cols in candidates.feature_slices_.items()},
        y, metrics=metrics, max_samples=None, n_neighbors=n_neighbors,
        working_memory=working_memory,
    )
    if hasattr(table, "attrs"):
        table.attrs["extraction_seconds"] = extraction_seconds
    return table
