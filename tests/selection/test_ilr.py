"""IntermediateLayerRegressor: continuous targets, r2 by default, in sweeps and displays."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from numpy.testing import assert_allclose  # noqa: E402
from sklearn.linear_model import Ridge  # noqa: E402
from sklearn.model_selection import KFold, cross_val_score  # noqa: E402

from sklearn_layers import (  # noqa: E402
    IntermediateLayerClassifier,
    IntermediateLayerRegressor,
    LayerFeatureTransformer,
    LayerSweepDisplay,
    layer_sweep,
)
from sklearn_layers._selection._ilr import default_regression_probe  # noqa: E402
from sklearn_layers.utils.toy import make_mlp  # noqa: E402


def regression_data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5)).astype(np.float32)
    y = X[:, 0] - 2.0 * X[:, 1] + rng.normal(0, 0.3, n)  # continuous
    return X, y


def test_layer_scores_are_cross_validated_r2_of_the_ridge_probe():
    X, y = regression_data()
    net = make_mlp(5, hidden=(16, 8), n_outputs=1)
    ilr = IntermediateLayerRegressor(LayerFeatureTransformer(net, cache=None), cv=3)
    ilr.fit(X, y)
    assert ilr.selection_ == "cv"
    for layer, score in ilr.layer_scores_.items():
        F = LayerFeatureTransformer(net, layers=layer, cache=None).fit_transform(X)
        expected = cross_val_score(default_regression_probe(), F, y, cv=KFold(3),
                                   scoring="r2").mean()
        # the same features and folds: only the order of three float64 sums differs
        assert score == pytest.approx(expected, rel=3 * np.finfo(float).eps)
    F = LayerFeatureTransformer(net, layers=ilr.best_layer_, cache=None).fit_transform(X)
    reference = default_regression_probe().fit(F, y)
    assert_allclose(ilr.predict(X), reference.predict(F), rtol=1e-6, atol=1e-9)
    assert ilr.score(X, y) == pytest.approx(reference.score(F, y), rel=1e-9)


def test_a_continuous_target_the_classifier_refuses():
    X, y = regression_data(60)
    net = make_mlp(5, hidden=(8,), n_outputs=1)
    with pytest.raises(ValueError, match="continuous"):
        IntermediateLayerClassifier(net, cv=2).fit(X, y)
    ilr = IntermediateLayerRegressor(net, cv=2, estimator=Ridge()).fit(X, y)
    assert not hasattr(ilr, "classes_") and not hasattr(ilr, "predict_proba")
    assert ilr.predict(X).dtype.kind == "f"


def test_a_validation_set_and_label_free_metrics_choose_too():
    X, y = regression_data(100)
    net = make_mlp(5, hidden=(16, 8), n_outputs=1)
    val = IntermediateLayerRegressor(net).fit(X[:80], y[:80], X_val=X[80:], y_val=y[80:])
    assert val.selection_ == "validation"
    ranked = IntermediateLayerRegressor(net, scoring="effective_rank").fit(X, y)
    assert ranked.selection_ == "metric"
    with pytest.raises(ValueError, match="needs class labels"):
        IntermediateLayerRegressor(net, scoring="nc1").fit(X, y)


def test_layer_sweep_defaults_to_the_ridge_probe_for_continuous_targets():
    X, y = regression_data(120)
    net = make_mlp(5, hidden=(16,), n_outputs=1)
    table = layer_sweep(LayerFeatureTransformer(net, cache=None), X[:80], y[:80],
                        test_sets={"rest": (X[80:], y[80:])}, cost_sample=0)
    assert set(table["head"]) == {"ridge"}
    for row in table.itertuples():
        lft = LayerFeatureTransformer(net, layers=row.layer, cache=None)
        F, F_test = lft.fit_transform(X[:80]), lft.transform(X[80:])
        expected = default_regression_probe().fit(F, y[:80]).score(F_test, y[80:])
        assert row.score == pytest.approx(expected, rel=1e-12)
        assert row.score_low <= row.score <= row.score_high


def test_the_display_plots_r2():
    X, y = regression_data(60)
    ilr = IntermediateLayerRegressor(make_mlp(5, hidden=(8,), n_outputs=1), cv=2).fit(X, y)
    display = LayerSweepDisplay.from_estimator(ilr)
    assert display.ax_.get_ylabel() == "r2"
    assert list(display.scores) == [("ridge", "cv")]  # as layer_sweep names it
    with pytest.raises(ValueError, match="a regressor has no classes"):
        LayerSweepDisplay.from_estimator(ilr, chance_level="uniform")
