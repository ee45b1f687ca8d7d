"""layer_metrics_from_features: a table of layer metrics of precomputed features.

:func:`~sklearn_layers.layer_metrics` (beside ``layer_sweep``) extracts the
features from a network and tabulates them here.
"""

import time
import warnings

import numpy as np
from sklearn.utils.validation import check_array

from ._registry import get_layer_metric, get_layer_metric_names
from ._validation import check_labels, check_positive_int, stratified_rows

_MIN_SAMPLES = 3


def metric_names(metrics, has_y):
    """The metric names ``metrics`` asks for, checked against the labels at hand."""
    if metrics is None:
        return [m for m in get_layer_metric_names() if has_y or not get_layer_metric(m).needs_y]
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    for name in names:
        if get_layer_metric(name).needs_y and not has_y:
            raise ValueError(f"The metric {name!r} needs class labels; pass y.")
    if not names:
        raise ValueError("metrics is empty; name at least one metric or pass None.")
    return names


def check_max_samples(max_samples):
    """``max_samples`` checked: None or an int of at least 3."""
    if max_samples is None:
        return None
    return check_positive_int(max_samples, "max_samples", minimum=_MIN_SAMPLES)


def _as_table(rows):
    from ..utils._optional import import_optional

    pd = import_optional("pandas", purpose="layer metrics (their table is a DataFrame)")
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

        A dead layer (every row the same, e.g. all zeros) gets NaN for every
        metric, and a metric undefined on a layer's features (TwoNN on fewer
        than 3 distinct rows) NaN for that layer, each with a
        ``RuntimeWarning`` naming the layer: the other layers' rows stand.
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
    table : pandas.DataFrame
        One row per layer with columns ``layer``, ``layer_index``,
        ``n_samples`` (rows used), ``n_features``, one column per metric, and
        ``seconds`` (time spent on that layer's metrics).

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
    names = metric_names(metrics, has_y=y is not None)
    max_samples = check_max_samples(max_samples)
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    sizes = {layer: len(F) for layer, F in features_by_layer.items()}
    n_samples = next(iter(sizes.values()))
    if len(set(sizes.values())) > 1:
        raise ValueError(f"Every layer needs the same number of rows; got {sizes}.")
    if y is not None:
        check_labels(np.empty((n_samples, 0)), y)
        y = np.asarray(y)
    n_used = n_samples if max_samples is None else min(n_samples, max_samples)
    if "knn_loo_accuracy" in names and n_neighbors >= n_used:
        # checked here: a metric's ValueError on one layer only makes that layer NaN
        raise ValueError(
            f"n_neighbors={n_neighbors} must be smaller than the number of rows used "
            f"({n_used}): each row's own vote is left out."
        )
    rows = stratified_rows(n_samples, y, max_samples, random_state)
    y_used = None if y is None else y[rows]
    table = []
    for index, (layer, F) in enumerate(features_by_layer.items()):
        F = check_array(np.asarray(F)[rows], dtype=[np.float64, np.float32],
                        ensure_min_samples=_MIN_SAMPLES, input_name=f"features of {layer!r}")
        start = time.perf_counter()
        values = _layer_values(layer, F, y_used, names, n_neighbors, working_memory)
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


def _layer_values(layer, F, y, names, n_neighbors, working_memory):
    """Each metric of one layer's features; NaN (with a warning) where undefined."""
    if F.shape[0] and np.all(F == F[:1]):
        warnings.warn(
            f"Layer {layer!r} is dead: every row of its features is the same, so its "
            f"metrics ({', '.join(names)}) are NaN.",
            RuntimeWarning, stacklevel=3,
        )
        return dict.fromkeys(names, np.nan)
    values = {}
    for name in names:
        metric = get_layer_metric(name)
        options = {"working_memory": working_memory}
        if name == "knn_loo_accuracy":
            options["n_neighbors"] = n_neighbors
        args = (F, y) if metric.needs_y else (F,)
        try:
            values[name] = float(metric.function(*args, **options))
        except ValueError as exc:  # undefined on these features
            warnings.warn(f"{name} is undefined on layer {layer!r}: {exc}",
                          RuntimeWarning, stacklevel=3)
            values[name] = np.nan
    return values
