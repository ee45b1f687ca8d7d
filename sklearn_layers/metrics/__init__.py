"""Layer metrics: how a layer's features are spread, with or without labels.

Each metric takes a feature matrix ``F`` (one row per sample) and returns a
float. :func:`get_layer_metric` names them for code that picks a layer by one
of them; :func:`~sklearn_layers.layer_metrics_from_features` tabulates them
over precomputed layers, :func:`~sklearn_layers.layer_metrics` (beside
``layer_sweep``) over the layers of a network.
"""

from ._collapse import nc1
from ._neighbors import knn_loo_accuracy, twonn_dimension
from ._registry import LayerMetric, get_layer_metric, get_layer_metric_names
from ._spectral import effective_rank, matrix_entropy
from ._table import layer_metrics_from_features

__all__ = [
    "LayerMetric",
    "effective_rank",
    "get_layer_metric",
    "get_layer_metric_names",
    "knn_loo_accuracy",
    "layer_metrics_from_features",
    "matrix_entropy",
    "nc1",
    "twonn_dimension",
]
