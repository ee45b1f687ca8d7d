"""layer_metrics: extraction from a network, then the table of layer_metrics_from_features."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.datasets import load_iris

from sklearn_layers import (
    LayerFeatureTransformer,
    MemoryCache,
    layer_metrics,
    layer_metrics_from_features,
)
from sklearn_layers.metrics import get_layer_metric_names
from sklearn_layers.utils.toy import make_mlp

from _helpers import RowCounter


def test_layer_metrics_extracts_only_the_sampled_rows_once():
    X, y = load_iris(return_X_y=True)
    net = make_mlp(4, hidden=(16, 8))
    counter = RowCounter(net)
    extractor = LayerFeatureTransformer(net, cache=MemoryCache())
    table = layer_metrics(extractor, X, y, max_samples=60, random_state=0)
    counter.remove()
    assert counter.rows == 60  # fit's one-row width probe is cached for transform
    assert table["layer"].tolist() == ["1", "3", "4"]
    assert table["n_samples"].tolist() == [60, 60, 60]
    assert table.attrs["extraction_seconds"] > 0


def test_layer_metrics_equals_the_features_version():
    X, y = load_iris(return_X_y=True)
    net = make_mlp(4, hidden=(16, 8))
    table = layer_metrics(LayerFeatureTransformer(net, cache=None), X, y, max_samples=None)
    lft = LayerFeatureTransformer(net, layers="all", cache=None).fit(X)
    features = lft.transform(X)
    expected = layer_metrics_from_features(
        {name: features[:, cols] for name, cols in lft.feature_slices_.items()}, y,
        max_samples=None,
    )
    columns = ["layer", "n_features", *get_layer_metric_names()]
    assert table[columns].equals(expected[columns])


def test_layer_metrics_samples_text_lists_and_dataframes():
    from sklearn_layers._selection._layer_metrics import _take_rows

    rows = np.array([0, 2])
    assert _take_rows(["a", "b", "c"], rows) == ["a", "c"]
    import pandas as pd

    frame = pd.DataFrame({"x": [1, 2, 3]}, index=[10, 11, 12])
    assert _take_rows(frame, rows).index.tolist() == [10, 12]
    import torch

    assert _take_rows(torch.arange(3), rows).tolist() == [0, 2]
    assert _take_rows({"ids": torch.arange(3)}, rows)["ids"].tolist() == [0, 2]


def test_digit_cnn_classes_separate_with_depth():
    # Real network, real data: an MNIST CNN's classes are far better separated
    # at its 256-wide hidden layer than after its first convolution stage.
    from sklearn_layers.datasets import load_digits_28x28
    from sklearn_layers.models import load_digit_cnn

    X, y = load_digits_28x28(return_X_y=True)
    table = layer_metrics(load_digit_cnn(), X, y, max_samples=600, random_state=0,
                          metrics=["nc1", "knn_loo_accuracy"]).set_index("layer")
    first, hidden = table.loc["conv_layers.2"], table.loc["fc_layers.1"]
    assert hidden["nc1"] < first["nc1"] / 4
    assert hidden["knn_loo_accuracy"] > first["knn_loo_accuracy"] + 0.1


def test_a_dead_layer_is_nan_and_the_table_stands():
    import torch
    from torch import nn

    X, y = load_iris(return_X_y=True)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3), nn.ReLU(),
                        nn.Linear(3, 3))
    with torch.no_grad():
        net[2].bias.fill_(-100.0)  # layer "3" is all zeros
    with pytest.warns(RuntimeWarning, match="Layer '3' is dead"):
        table = layer_metrics(net, X, y, layers=["1", "3"], random_state=0)
    metric_columns = get_layer_metric_names()
    assert table.set_index("layer").loc["3", metric_columns].isna().all()
    assert table.set_index("layer").loc["1", metric_columns].notna().all()


def test_the_extractor_carries_preprocess_and_is_left_unfitted():
    # layer_metrics had no preprocess: items (images, paths) got no metrics
    X, y = load_iris(return_X_y=True)
    items = [row.tolist() for row in X]
    net = make_mlp(4, hidden=(16, 8))

    def to_tensor(rows):
        import torch

        return torch.tensor(rows, dtype=torch.float32)

    extractor = LayerFeatureTransformer(net, preprocess=to_tensor, cache=None)
    from_items = layer_metrics(extractor, items, y, max_samples=None)
    from_array = layer_metrics(LayerFeatureTransformer(net, cache=None), X, y,
                               max_samples=None)
    columns = ["layer", "n_features", *get_layer_metric_names()]
    assert_allclose(from_items[columns[2:]].to_numpy(dtype=float),
                    from_array[columns[2:]].to_numpy(dtype=float), rtol=1e-5)
    assert not hasattr(extractor, "model_")
    assert extractor.get_params()["layers"] == "penultimate"
