"""LayerSweepDisplay on selectivity and at one size; LayerCurveDisplay on learning curves."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid  # noqa: E402

from sklearn_layers import LayerCurveDisplay, LayerSweepDisplay, layer_sweep  # noqa: E402
from sklearn_layers.utils.toy import make_mlp  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def table():
    rng = np.random.RandomState(0)
    distinct = rng.randn(40, 4).astype(np.float32)
    X = np.repeat(distinct, 2, axis=0)
    y = (X[:, 0] > 0).astype(int)
    return layer_sweep(make_mlp(4, hidden=(16,), n_outputs=2), X, y,
                       estimators=[("1-NN", KNeighborsClassifier(1)), ("centroid", NearestCentroid())],
                       test_sets={"seen": (distinct, (distinct[:, 0] > 0).astype(int))},
                       control=True, train_sizes=[10, 40, 80], n_bootstrap=20, cost_sample=0)


def test_sweep_display_draws_the_selectivity_at_the_largest_size(table):
    display = LayerSweepDisplay.from_sweep(table, score="selectivity")
    rows = table[(table["train_size"] == 80) & (table["head"] == "centroid")]
    line = display.lines_[("centroid", "seen")]
    assert_allclose(line.get_ydata(), rows.sort_values("layer_index")["selectivity"])
    small = LayerSweepDisplay.from_sweep(table, score="control_score", train_size=10)
    rows = table[(table["train_size"] == 10) & (table["head"] == "1-NN")]
    assert_allclose(small.lines_[("1-NN", "seen")].get_ydata(),
                    rows.sort_values("layer_index")["control_score"])


def test_sweep_display_refuses_a_missing_column_or_size(table):
    with pytest.raises(ValueError, match="score must be one of"):
        LayerSweepDisplay.from_sweep(table, score="accuracy")
    with pytest.raises(ValueError, match="not in the table's sizes"):
        LayerSweepDisplay.from_sweep(table, train_size=11)
    plain = table[table["train_size"] == 80].drop(columns=["selectivity"])
    with pytest.raises(ValueError, match="control=True"):
        LayerSweepDisplay.from_sweep(plain, score="selectivity")


def test_curve_display_one_line_per_layer_or_per_head(table):
    display = LayerCurveDisplay.from_sweep(table, head="centroid")
    assert list(display.lines_) == list(dict.fromkeys(table.sort_values("layer_index")["layer"]))
    layer = next(iter(display.lines_))
    rows = table[(table["layer"] == layer) & (table["head"] == "centroid")]
    assert_allclose(display.lines_[layer].get_xdata(), [10, 40, 80])
    assert_allclose(display.lines_[layer].get_ydata(), rows.sort_values("train_size")["score"])
    assert display.ax_.get_xscale() == "log"
    by_head = LayerCurveDisplay.from_sweep(table, lines="head", layer=layer, score="selectivity")
    assert list(by_head.lines_) == ["1-NN", "centroid"]
    assert set(by_head.bands_) <= {"1-NN", "centroid"}


def test_curve_display_asks_which_head_and_needs_sizes(table):
    with pytest.raises(ValueError, match="several values of head"):
        LayerCurveDisplay.from_sweep(table)
    with pytest.raises(ValueError, match="train_sizes"):
        LayerCurveDisplay.from_sweep(table.drop(columns=["train_size"]), head="1-NN")


def test_from_estimator_names_the_selectivity_and_has_no_uniform_chance():
    from sklearn_layers import IntermediateLayerClassifier

    rng = np.random.RandomState(0)
    X = rng.randn(60, 4).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    ilc = IntermediateLayerClassifier(make_mlp(4, hidden=(8,), n_outputs=2), cv=3,
                                      estimator=NearestCentroid(), control=True,
                                      random_state=0).fit(X, y)
    display = LayerSweepDisplay.from_estimator(ilc)
    assert display.ax_.get_ylabel() == "selectivity (accuracy)"
    with pytest.raises(ValueError, match="uniform"):
        LayerSweepDisplay.from_estimator(ilc, chance_level="uniform")
