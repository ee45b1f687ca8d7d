"""Layer metrics by name, with their direction and whether they need labels."""

from typing import Callable, NamedTuple

from ._collapse import nc1
from ._neighbors import knn_loo_accuracy, twonn_dimension
from ._spectral import effective_rank, matrix_entropy


class LayerMetric(NamedTuple):
    """A layer metric and how to read it.

    Attributes
    ----------
    function : callable
        ``function(F, **kwargs)``, or ``function(F, y, **kwargs)`` when
        ``needs_y``; every one accepts ``working_memory=``.
    greater_is_better : bool
        The direction in which a layer is taken to be better. For the
        label-free metrics this is the reading of the paper that proposed the
        metric, a hypothesis to check on your data rather than a fact.
    needs_y : bool
        Whether the metric needs class labels.
    """

    function: Callable
    greater_is_better: bool
    needs_y: bool


# Directions: RankMe and the dataset entropy (the same spectrum, through sigma
# and sigma^2) rise with downstream accuracy in Garrido et al. 2023; a lower
# intrinsic dimension of the last hidden layers went with better accuracy in
# Ansuini et al. 2019; more collapse (lower NC1) with better transfer in
# Galanti et al. 2022.
_METRICS = {
    "effective_rank": LayerMetric(effective_rank, True, False),
    "matrix_entropy": LayerMetric(matrix_entropy, True, False),
    "twonn_dimension": LayerMetric(twonn_dimension, False, False),
    "nc1": LayerMetric(nc1, False, True),
    "knn_loo_accuracy": LayerMetric(knn_loo_accuracy, True, True),
}


def get_layer_metric_names():
    """Names accepted by :func:`get_layer_metric` and ``layer_metrics(metrics=...)``.

    Returns
    -------
    names : list of str
        In the order of :func:`~sklearn_layers.layer_metrics`' columns.

    Examples
    --------
    >>> from sklearn_layers.metrics import get_layer_metric_names
    >>> get_layer_metric_names()
    ['effective_rank', 'matrix_entropy', 'twonn_dimension', 'nc1', 'knn_loo_accuracy']
    """
    return list(_METRICS)


def get_layer_metric(name):
    """The layer metric called ``name``, with its direction and label needs.

    Use it to turn a metric into a score where greater is better, e.g. to
    choose a layer without labels::

        metric = get_layer_metric("effective_rank")
        value = metric.function(F, y) if metric.needs_y else metric.function(F)
        score = value if metric.greater_is_better else -value

    Parameters
    ----------
    name : str
        One of :func:`get_layer_metric_names`.

    Returns
    -------
    metric : LayerMetric
        A named tuple ``(function, greater_is_better, needs_y)``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_layers.metrics import get_layer_metric
    >>> metric = get_layer_metric("twonn_dimension")
    >>> metric.greater_is_better, metric.needs_y
    (False, False)
    >>> metric.function is get_layer_metric("twonn_dimension").function
    True
    """
    try:
        return _METRICS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown layer metric {name!r}; the layer metrics are "
            f"{', '.join(_METRICS)}."
        ) from None
