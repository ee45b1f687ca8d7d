import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.neighbors import NearestCentroid  # noqa: E402

from sklearn_layers import (  # noqa: E402
    IntermediateLayerClassifier,
    LayerSweepDisplay,
    PrototypeClassifier,
    layer_sweep,
)
from sklearn_layers._display._pareto import pareto_front  # noqa: E402
from sklearn_layers.utils.toy import make_mlp, make_small_cnn  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 1, 12, 12)).astype(np.float32)
    y = np.arange(120) % 2
    X[y == 1] += 0.08  # a weak signal: scores inside (0, 1), intervals of width > 0
    with warnings.catch_warnings():
        # NearestCentroid on ReLU features that are 0 in a whole class
        warnings.filterwarnings("ignore", "self.within_class_std_dev_", UserWarning)
        return layer_sweep(
            make_small_cnn(n_classes=2), X[:80], y[:80],
            estimators=[("centroid", NearestCentroid()), ("prototype", PrototypeClassifier())],
            cv=3, test_sets={"shifted": (X[80:] * 2, y[80:])}, cost_sample=0,
        )


def _legend_labels(display):
    return [text.get_text() for text in display.legend_.get_texts()]


def _column(table, head, split, column):
    rows = table[(table["head"] == head) & (table["split"] == split)]
    return rows.sort_values("layer_index")[column].to_numpy()


def test_legend_has_one_entry_per_head_split_and_mark(table):
    display = LayerSweepDisplay.from_sweep(table, chance_level=0.5)
    # heads (colours), splits (styles; in-distribution "cv" first), then the marks
    assert _legend_labels(display) == [
        "centroid", "prototype", "cv", "shifted", "95% interval", "best layer",
        "chance level",
    ]
    # a second plot on the same axes repeats no entry
    display.plot(ax=display.ax_)
    assert _legend_labels(display) == [
        "centroid", "prototype", "cv", "shifted", "95% interval", "best layer",
        "chance level",
    ]


def test_one_colour_per_head_one_style_per_split(table):
    display = LayerSweepDisplay.from_sweep(table)
    lines = display.lines_
    heads, splits = ("centroid", "prototype"), ("cv", "shifted")
    assert set(lines) == {(h, s) for h in heads for s in splits}
    for head in ("centroid", "prototype"):
        assert lines[(head, "cv")].get_color() == lines[(head, "shifted")].get_color()
    assert lines[("centroid", "cv")].get_color() != (
        lines[("prototype", "cv")].get_color())
    for split in ("cv", "shifted"):
        assert (lines[("centroid", split)].get_linestyle()
                == lines[("prototype", split)].get_linestyle())
    assert lines[("centroid", "cv")].get_linestyle() == "-"  # in distribution: solid
    assert lines[("centroid", "shifted")].get_linestyle() == "--"
    # the legend's handles carry the same colours and styles
    handles = dict(zip(_legend_labels(display), display.legend_.legend_handles))
    assert handles["prototype"].get_color() == lines[("prototype", "cv")].get_color()
    assert handles["shifted"].get_linestyle() == "--"


def test_lines_are_the_scores_in_network_order(table):
    display = LayerSweepDisplay.from_sweep(table, dodge=0)
    ticks = [t.get_text() for t in display.ax_.get_xticklabels()]
    assert ticks == ["2", "5", "9", "10"]
    for key, line in display.lines_.items():
        np.testing.assert_array_equal(line.get_ydata(), _column(table, *key, "score"))
        np.testing.assert_array_equal(line.get_xdata(), np.arange(4))


def test_dodge_spreads_the_lines_symmetrically(table):
    display = LayerSweepDisplay.from_sweep(table, dodge=0.3)
    offsets = sorted(float(line.get_xdata()[0]) for line in display.lines_.values())
    np.testing.assert_allclose(offsets, np.linspace(-0.15, 0.15, 4), atol=1e-12)
    # no dodge for bands: they must share the layers' positions
    display = LayerSweepDisplay.from_sweep(table, interval_style="fill_between")
    for line in display.lines_.values():
        np.testing.assert_array_equal(line.get_xdata(), np.arange(4))


def test_error_bars_span_the_tables_intervals(table):
    display = LayerSweepDisplay.from_sweep(table)
    containers = [c for c in display.ax_.containers if isinstance(c, ErrorbarContainer)]
    assert len(containers) == len(display.intervals_) == 4
    for key, container in display.intervals_.items():
        assert isinstance(container, ErrorbarContainer)
        (bars,) = container.lines[2]
        segments = np.array(bars.get_segments())  # (n_drawn, 2 ends, xy)
        low = _column(table, *key, "score_low")
        high = _column(table, *key, "score_high")
        drawn = high > low
        assert drawn.sum() >= 2
        np.testing.assert_allclose(segments[:, 0, 1], low[drawn], rtol=1e-12)
        np.testing.assert_allclose(segments[:, 1, 1], high[drawn], rtol=1e-12)
        x = display.lines_[key].get_xdata()
        np.testing.assert_allclose(segments[:, 0, 0], x[drawn])


def test_bands_span_the_tables_intervals(table):
    display = LayerSweepDisplay.from_sweep(table, interval_style="fill_between")
    bands = [c for c in display.ax_.collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(display.intervals_) == 4
    for key, band in display.intervals_.items():
        vertices = {tuple(np.round(v, 12))
                    for path in band.get_paths() for v in path.vertices}
        low = _column(table, *key, "score_low")
        high = _column(table, *key, "score_high")
        for x in np.flatnonzero(high > low):
            assert (x, round(low[x], 12)) in vertices
            assert (x, round(high[x], 12)) in vertices


def test_no_interval_where_low_equals_high():
    display = LayerSweepDisplay(
        layers=["a", "b"], scores={("h", "s"): [0.5, 0.6]},
        score_low={("h", "s"): [0.5, 0.6]}, score_high={("h", "s"): [0.5, 0.6]},
    ).plot()
    assert display.intervals_ == {} and display.ax_.containers == []
    assert "95% interval" not in _legend_labels(display)
    assert LayerSweepDisplay(layers=["a"], scores={("h", "s"): [0.5]}).plot(
        interval_style=None).intervals_ == {}


def test_chance_level_line(table):
    display = LayerSweepDisplay.from_sweep(table, chance_level=0.5)
    (line,) = display.chance_level_
    np.testing.assert_array_equal(line.get_ydata(), [0.5, 0.5])
    # one level per split, drawn in that split's line style
    display = LayerSweepDisplay.from_sweep(
        table, chance_level={"cv": 0.5, "shifted": 0.6})
    levels = {ln.get_ydata()[0]: ln.get_linestyle() for ln in display.chance_level_}
    assert levels == {0.5: "-", 0.6: "--"}
    assert _legend_labels(display).count("chance level") == 1
    assert LayerSweepDisplay.from_sweep(table).chance_level_ == []
    with pytest.raises(ValueError, match="chance_level must be a finite number"):
        LayerSweepDisplay.from_sweep(table, chance_level="half")


def test_best_layer_star_and_chosen_layers(table):
    display = LayerSweepDisplay.from_sweep(table, dodge=0)
    for key, marker in display.best_markers_.items():
        scores = _column(table, *key, "score")
        assert marker.get_marker() == "*"
        assert marker.get_xdata()[0] == np.argmax(scores)
        assert marker.get_ydata()[0] == scores.max()
        assert marker.get_markerfacecolor() == display.lines_[key].get_color()
    chosen = LayerSweepDisplay(
        layers=["a", "b", "c"], scores={("h", "s"): [0.9, 0.8, 0.7]},
        chosen_layers={("h", "s"): "b"},
    ).plot()
    assert chosen.best_markers_[("h", "s")].get_xdata()[0] == 1
    assert "chosen layer" in _legend_labels(chosen)
    assert "best layer" not in _legend_labels(chosen)
    assert LayerSweepDisplay.from_sweep(table, mark_best=False).best_markers_ == {}


def test_legend_is_outside_the_data_area(table):
    display = LayerSweepDisplay.from_sweep(table)
    display.figure_.canvas.draw()
    legend_box = display.legend_.get_window_extent()
    axes_box = display.ax_.get_window_extent()
    assert legend_box.x0 >= axes_box.x1
    # the figure made room for it
    assert legend_box.x1 <= display.figure_.bbox.x1 + 1


def test_legend_false_leaves_entries_for_a_figure_legend(table):
    fig, axes = plt.subplots(1, 2)
    for ax, split in zip(axes, ("cv", "shifted")):
        rows = table[table["split"] == split]
        LayerSweepDisplay.from_sweep(rows, ax=ax, legend=False)
        assert ax.get_legend() is None
    handles, labels = axes[0].get_legend_handles_labels()
    assert labels == ["centroid", "prototype", "cv", "95% interval", "best layer"]


def test_pareto_front_by_hand():
    #            a     b     c     d     e     f
    costs = [0.10, 0.20, 0.30, 0.40, 0.50, np.nan]
    scores = [0.50, 0.70, 0.60, 0.70, 0.90, 0.99]
    # c: b is cheaper and better; d: b is cheaper and as good; f: unknown cost
    np.testing.assert_array_equal(pareto_front(costs, scores),
                                  [True, True, False, False, True, False])
    # identical points dominate neither each other
    np.testing.assert_array_equal(pareto_front([1, 1, 2], [0.5, 0.5, 0.4]),
                                  [True, True, False])
    # a cheaper layer that scores NaN is simply absent
    np.testing.assert_array_equal(pareto_front([0.1, 0.2], [np.nan, 0.3]),
                                  [False, True])


def test_pareto_front_matches_the_definition():
    rng = np.random.default_rng(3)
    for _ in range(50):
        costs = rng.integers(0, 5, size=8).astype(float)
        scores = rng.integers(0, 5, size=8).astype(float)
        expected = [
            not any(cj <= ci and sj >= si and (cj < ci or sj > si)
                    for cj, sj in zip(costs, scores))
            for ci, si in zip(costs, scores)
        ]
        np.testing.assert_array_equal(pareto_front(costs, scores), expected)


def test_cost_view_draws_the_front_and_labels_every_layer():
    layers = ["a", "b", "c", "d", "e"]
    display = LayerSweepDisplay(
        layers=layers, scores={("h", "s"): [0.50, 0.70, 0.60, 0.70, 0.90]},
        costs=[0.10, 0.20, 0.30, 0.40, 0.50], cost_name="share",
    ).plot(kind="cost")
    assert display.pareto_front_ == {("h", "s"): ["a", "b", "e"]}
    front = display.lines_[("h", "s")]
    np.testing.assert_array_equal(front.get_xdata(), [0.10, 0.20, 0.50])
    np.testing.assert_array_equal(front.get_ydata(), [0.50, 0.70, 0.90])
    assert front.get_drawstyle() == "steps-post"
    hollow = [ln for ln in display.ax_.lines
              if ln.get_label() == "_dominated"]
    (off,) = hollow
    np.testing.assert_array_equal(off.get_xdata(), [0.30, 0.40])
    assert display.ax_.get_xlabel() == "share"
    (top,) = display.ax_.child_axes
    assert [t.get_text() for t in top.get_xticklabels()] == layers
    assert "off the Pareto front" in _legend_labels(display)
    assert display.best_markers_[("h", "s")].get_xdata()[0] == 0.50


def test_cost_view_from_sweep(table):
    display = LayerSweepDisplay.from_sweep(table, kind="cost")
    shares = table.drop_duplicates("layer").sort_values("layer_index")["forward_share"]
    assert display.ax_.get_xlabel() == "share of a full forward pass (FLOPs)"
    for key, front in display.pareto_front_.items():
        scores = _column(table, *key, "score")
        names = list(table.drop_duplicates("layer").sort_values("layer_index")["layer"])
        on = pareto_front(shares.to_numpy(), scores)
        expected = sorted((n for n, o in zip(names, on) if o),
                          key=lambda n: shares.to_numpy()[names.index(n)])
        assert front == expected
    # layers close in cost share a tick, none is left out
    (top,) = display.ax_.child_axes
    labelled = "\n".join(t.get_text() for t in top.get_xticklabels()).split("\n")
    assert sorted(labelled) == sorted(table["layer"].unique())


def test_cost_view_needs_costs():
    display = LayerSweepDisplay(layers=["a"], scores={("h", "s"): [0.5]})
    with pytest.raises(ValueError, match="kind='cost' needs the cost"):
        display.plot(kind="cost")


@pytest.fixture(scope="module")
def iris_ilc():
    X, y = load_iris(return_X_y=True)
    return IntermediateLayerClassifier(make_mlp(4, hidden=(16, 8)), cv=4).fit(X, y), X, y


def test_from_estimator_interval_is_the_sweeps_fold_interval(iris_ilc):
    ilc, X, y = iris_ilc
    fig, ax = plt.subplots()
    display = LayerSweepDisplay.from_estimator(ilc, ax=ax, chance_level="uniform",
                                               dodge=0)
    assert display.ax_ is ax and display.figure_ is fig
    key = ("logistic", "cv")
    assert list(display.lines_) == [key]
    np.testing.assert_allclose(display.lines_[key].get_ydata(),
                               [ilc.layer_scores_[n] for n in ilc.layer_scores_])
    # the same folds in layer_sweep give the same 95% interval (mean +- 1.96 SE)
    table = layer_sweep(make_mlp(4, hidden=(16, 8)), X, y, cv=4, cost_sample=0)
    (bars,) = display.intervals_[key].lines[2]
    segments = np.array(bars.get_segments())
    np.testing.assert_allclose(segments[:, 0, 1], _column(table, *key, "score_low"),
                               atol=1e-12)
    np.testing.assert_allclose(segments[:, 1, 1], _column(table, *key, "score_high"),
                               atol=1e-12)
    # the star is on the chosen layer, the chance line at 1/3
    star = display.best_markers_[key]
    assert star.get_xdata()[0] == list(ilc.layer_scores_).index(ilc.best_layer_)
    np.testing.assert_array_equal(display.chance_level_[0].get_ydata(), [1 / 3, 1 / 3])
    assert "chosen layer" in _legend_labels(display)
    assert ax.get_ylabel() == "accuracy"
    LayerSweepDisplay.from_estimator(ilc, kind="cost")


def test_from_estimator_without_interval_and_metric_chance(iris_ilc):
    _, X, y = iris_ilc
    val = IntermediateLayerClassifier(make_mlp(4, hidden=(16, 8))).fit(X[::2], y[::2],
                                               X_val=X[1::2], y_val=y[1::2])
    display = LayerSweepDisplay.from_estimator(val)
    assert list(display.lines_) == [("logistic", "validation")]
    assert display.intervals_ == {}
    ranked = IntermediateLayerClassifier(make_mlp(4, hidden=(16, 8)),
                                         scoring="effective_rank").fit(X, y)
    assert LayerSweepDisplay.from_estimator(ranked).ax_.get_ylabel() == "effective_rank"
    with pytest.raises(ValueError, match="chance_level='uniform' is 1 / n_classes"):
        LayerSweepDisplay.from_estimator(ranked, chance_level="uniform")


def test_two_estimators_on_one_axes_share_colour_and_legend(iris_ilc):
    ilc, X, y = iris_ilc
    val = IntermediateLayerClassifier(make_mlp(4, hidden=(16, 8))).fit(X[::2], y[::2],
                                               X_val=X[1::2], y_val=y[1::2])
    ax = LayerSweepDisplay.from_estimator(val).ax_
    second = LayerSweepDisplay.from_estimator(ilc, ax=ax)
    first_line = [ln for ln in ax.lines if ln.get_label() == "_score"][0]
    assert first_line.get_color() == second.lines_[("logistic", "cv")].get_color()
    cv_line = second.lines_[("logistic", "cv")]
    assert first_line.get_linestyle() != cv_line.get_linestyle()
    assert _legend_labels(second) == [
        "logistic", "validation", "cv", "chosen layer", "95% interval",
    ]


def test_new_heads_take_the_next_free_colour(table):
    ax = LayerSweepDisplay.from_sweep(table[table["head"] == "prototype"]).ax_
    display = LayerSweepDisplay.from_sweep(table, ax=ax)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    assert display.lines_[("prototype", "cv")].get_color() == colours[0]
    assert display.lines_[("centroid", "cv")].get_color() == colours[1]


def test_more_splits_than_styles_warn():
    scores = {("h", f"split{i}"): [0.5] for i in range(7)}
    with pytest.warns(UserWarning, match="More than 6 splits"):
        LayerSweepDisplay(layers=["a"], scores=scores).plot()


def test_bad_tables_and_arguments(table):
    with pytest.raises(ValueError, match="several rows for layer"):
        LayerSweepDisplay.from_sweep(table.assign(head="same"))
    with pytest.raises(ValueError, match=r"lacks the columns \['layer_index'\]"):
        LayerSweepDisplay.from_sweep(table.drop(columns="layer_index"))
    with pytest.raises(ValueError, match="The table is empty"):
        LayerSweepDisplay.from_sweep(table.iloc[:0])
    with pytest.raises(ValueError, match="cost must be one of"):
        LayerSweepDisplay.from_sweep(table, cost="flops")
    with pytest.raises(ValueError, match="kind must be one of"):
        LayerSweepDisplay.from_sweep(table, kind="layers")
    with pytest.raises(ValueError, match="interval_style must be one of"):
        LayerSweepDisplay.from_sweep(table, interval_style="band")
    display = LayerSweepDisplay(layers=["a", "b"], scores={("h", "s"): [0.5]})
    with pytest.raises(ValueError, match=r"expected one value per layer, shape \(2,\)"):
        display.plot()
    display = LayerSweepDisplay(layers=["a"], scores={"h": [0.5]})
    with pytest.raises(ValueError, match="keyed by \\(head, split\\) tuples"):
        display.plot()
    display = LayerSweepDisplay(layers=["a"], scores={("h", "s"): [0.5]},
                                chosen_layers={("h", "s"): "z"})
    with pytest.raises(ValueError, match="'z' is not one of the layers"):
        display.plot()


def test_from_sweep_accepts_records_and_saves(table, tmp_path):
    display = LayerSweepDisplay.from_sweep(table.to_dict("records"),
                                           score_name="accuracy")
    assert display.ax_.get_ylabel() == "accuracy"
    out = tmp_path / "sweep.png"
    display.figure_.savefig(out)
    assert out.stat().st_size > 1000


def test_from_estimator_names_the_head_as_its_class():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    ilc = IntermediateLayerClassifier(
        make_mlp(4, hidden=(16, 8)), cv=3,
        estimator=make_pipeline(StandardScaler(), NearestCentroid()),
    ).fit(X, y)
    assert list(LayerSweepDisplay.from_estimator(ilc).scores) == [("NearestCentroid", "cv")]
