import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from sklearn.neighbors import NearestCentroid  # noqa: E402

from sklearn_layers import ILC, LayerSweepDisplay, layer_sweep  # noqa: E402
from sklearn_layers.utils.toy import make_small_cnn  # noqa: E402


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 1, 12, 12)).astype(np.float32)
    y = np.arange(40) % 2
    X[y == 1] += 0.5
    return layer_sweep(
        make_small_cnn(n_classes=2), X[:30], y[:30],
        heads={"centroid": NearestCentroid()}, cv=2,
        test_sets={"shifted": (X[30:] * 2, y[30:])},
    )


def test_from_sweep_draws_one_line_per_head_and_split(table, tmp_path):
    display = LayerSweepDisplay.from_sweep(table)
    assert set(display.lines_) == {("centroid", "cv"), ("centroid", "shifted")}
    assert [t.get_text() for t in display.ax_.get_xticklabels()] == ["2", "5", "9", "10"]
    cv = table[table.split == "cv"].sort_values("layer_index")["score"].to_numpy()
    assert np.array_equal(display.lines_[("centroid", "cv")].get_ydata(), cv)  # stored
    # the best layer of each line carries a star marker at the maximum
    stars = [ln for ln in display.ax_.lines if ln.get_marker() == "*"]
    assert len(stars) == 2
    assert any(s.get_ydata()[0] == cv.max() for s in stars)
    out = tmp_path / "sweep.png"
    display.figure_.savefig(out)
    assert out.stat().st_size > 1000


def test_plot_on_given_axes_and_from_estimator(tmp_path):
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 1, 12, 12)).astype(np.float32)
    y = np.arange(40) % 2
    X[y == 1] += 0.5
    ilc = ILC(make_small_cnn(n_classes=2), cv=2).fit(X, y)
    fig, ax = plt.subplots()
    display = LayerSweepDisplay.from_estimator(ilc, ax=ax)
    assert display.ax_ is ax and display.figure_ is fig
    assert list(display.lines_) == [("logistic", "cv")]
    assert np.array_equal(display.lines_[("logistic", "cv")].get_ydata(),
                          [ilc.layer_scores_[n] for n in ilc.layer_scores_])
    fig.savefig(tmp_path / "ilc.png")
    plt.close("all")
