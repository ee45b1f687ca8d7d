"""LayerWeightsDisplay: one bar per layer of a weighted fusion."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402

from sklearn_layers import (  # noqa: E402
    ConcatFusion,
    LayerFusionClassifier,
    LayerWeightsDisplay,
    WeightedFusion,
)
from sklearn_layers.utils.toy import make_small_cnn  # noqa: E402


def images(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, 12, 12)).astype(np.float32)
    y = np.arange(n) % 3
    X[y == 1, :, :6] += 1.0
    X[y == 2, :, 6:] += 1.0
    return X, y


def test_weights_display_draws_one_bar_per_layer(tmp_path):
    import matplotlib.pyplot as plt

    X, y = images()
    net = make_small_cnn(n_classes=3)
    fused = LayerFusionClassifier(net, layers=["2", "5"],
                                  fusion=WeightedFusion(random_state=0)).fit(X, y)
    fig, ax = plt.subplots()
    display = LayerWeightsDisplay.from_estimator(fused, ax=ax)
    assert display.ax_ is ax and display.figure_ is fig
    assert_allclose([bar.get_height() for bar in display.bars_],
                    fused.fusion_.layer_weights_)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2", "5"]
    fig.savefig(tmp_path / "weights.png")
    assert (tmp_path / "weights.png").stat().st_size > 1000
    concat = LayerFusionClassifier(net, layers=["2", "5"], fusion=ConcatFusion()).fit(X, y)
    with pytest.raises(ValueError, match="only WeightedFusion learns layer weights"):
        LayerWeightsDisplay.from_estimator(concat)
    with pytest.raises(ValueError, match="one value per layer"):
        LayerWeightsDisplay(layers=["a", "b"], weights=[1.0])
    plt.close("all")
