"""EarlyExitClassifier: calibration, per-row exits, staged batches, the display."""

import itertools
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from torch import nn

from sklearn_layers import (
    EarlyExitClassifier,
    EarlyExitDisplay,
    LayerFeatureTransformer,
    MemoryCache,
)
from sklearn_layers._selection._cost import forward_shares
from sklearn_layers._selection._exit_schedule import plan_stages, simulated_cost
from sklearn_layers._selection._exit_thresholds import (
    calibrate_thresholds,
    first_exits,
    operating_point,
)
from sklearn_layers._transformer import first_row
from sklearn_layers.utils.toy import make_mlp

from _helpers import RowCounter

REPO = Path(__file__).resolve().parents[2]


def digits_data(n=600):
    X, y = load_digits(return_X_y=True)
    return (X[:n] / 16.0).astype(np.float32), y[:n], (X[n:n + 300] / 16.0).astype(
        np.float32), y[n:n + 300]


def float64_mlp():
    # a float64 network: batch composition changes a row's activations by
    # rounding far below float32's resolution, so its float32 features are the
    # same in any batch and predictions can be compared exactly
    return make_mlp(64, hidden=(32, 32), n_outputs=10).double()


class Widening(nn.Module):
    """Each exit sees more of the input than the one before (6, 12, then 48
    random features): easy rows leave at ``a``, harder ones at ``b`` or ``c``."""

    def __init__(self):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.a = nn.Linear(64, 6)
        self.b = nn.Linear(70, 12)
        self.c = nn.Linear(76, 48)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) / 4)
        self.double()

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = torch.relu(self.b(torch.cat([h, x], dim=1)))
        return self.c(torch.cat([h, x], dim=1))


def fitted(max_score_drop=0.02, batch_size=256, net=None, **kw):
    X, y, X_test, y_test = digits_data()
    net = Widening() if net is None else net
    extractor = LayerFeatureTransformer(net, cache=None, batch_size=batch_size)
    clf = EarlyExitClassifier(extractor, max_score_drop=max_score_drop, cv=3, **kw)
    return clf.fit(X, y), X_test, y_test


# ---------------------------------------------------------------- thresholds


def test_first_exits_by_hand():
    conf = np.array([[0.9, 0.1, 0.2], [0.5, 0.8, 0.1], [0.5, 0.5, 0.1]])
    assert_array_equal(first_exits(conf, [0.9, 0.7, -np.inf]), [0, 1, 2])
    assert_array_equal(first_exits(conf, [np.inf, np.inf, np.inf]), [2, 2, 2])


def _brute_force(conf, correct, costs, target):
    """The cheapest feasible thresholds over every data value, exhaustively."""
    k = conf.shape[1]
    grids = [np.append(np.unique(conf[:, j]), np.inf) for j in range(k - 1)]
    best = None
    for choice in itertools.product(*grids):
        exits = first_exits(conf, [*choice, -np.inf])
        acc, cost, _ = operating_point(exits, correct, costs)
        if acc >= target - 1e-12 and (best is None or cost < best - 1e-12):
            best = cost
    return best


@pytest.mark.parametrize("seed", range(5))
def test_two_exits_find_the_exact_optimum(seed):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, size=(40, 2))
    correct = rng.uniform(size=(40, 2)) < conf  # confident rows are right more often
    costs = np.array([0.3, 1.0])
    target = correct[:, -1].mean() - 0.05
    thresholds = calibrate_thresholds(conf, correct, costs, target)
    acc, cost, _ = operating_point(first_exits(conf, thresholds), correct, costs)
    assert acc >= target - 1e-12
    assert cost == pytest.approx(_brute_force(conf, correct, costs, target))


@pytest.mark.parametrize("seed", range(5))
def test_three_exits_are_feasible_and_near_the_optimum(seed):
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.3, 1.0, size=(25, 3))
    correct = rng.uniform(size=(25, 3)) < conf
    costs = np.array([0.2, 0.5, 1.0])
    target = correct[:, -1].mean() - 0.04
    thresholds = calibrate_thresholds(conf, correct, costs, target)
    acc, cost, _ = operating_point(first_exits(conf, thresholds), correct, costs)
    optimum = _brute_force(conf, correct, costs, target)
    assert acc >= target - 1e-12
    # a greedy search: feasible, never worse than the last exit, close to the optimum
    assert optimum - 1e-12 <= cost <= optimum + 0.1


def test_a_target_above_the_last_exit_sends_every_row_there():
    conf = np.array([[0.99, 0.6], [0.99, 0.6]])
    correct = np.array([[True, False], [True, False]])
    thresholds = calibrate_thresholds(conf, correct, np.array([0.1, 1.0]), 1.0)
    assert_array_equal(first_exits(conf, thresholds), [1, 1])


# ---------------------------------------------------------------- schedule


def test_simulated_cost_by_hand():
    exits, costs = np.array([0, 0, 2, 0]), np.array([0.1, 0.5, 1.0])
    # one stage: batches [0, 0] stop at exit 0, [2, 0] run to exit 2
    assert simulated_cost(exits, costs, (2,), 2) == pytest.approx((2 * 0.1 + 2 * 1.0) / 4)
    # stages (0, 2): every batch stops at exit 0, then the one open row runs again
    assert simulated_cost(exits, costs, (0, 2), 2) == pytest.approx((4 * 0.1 + 1.0) / 4)
    assert plan_stages(exits, costs, 2) == (0, 2)
    assert plan_stages(exits, costs, 1) == (2,)


# ---------------------------------------------------------------- the classifier


def test_calibration_uses_cross_fitted_predictions():
    clf, _, _ = fitted()
    X, y, _, _ = digits_data()
    features = clf.extractor_.transform(X)
    cv = StratifiedKFold(3)
    for k, name in enumerate(clf.exit_layers_):
        F = features[:, clf.extractor_.feature_slices_[name]]
        proba = cross_val_predict(clf._estimator(), F, y, cv=cv, method="predict_proba")
        predicted = cross_val_predict(clf._estimator(), F, y, cv=cv)
        assert_allclose(clf.calibration_confidences_[:, k], proba.max(axis=1), rtol=1e-12)
        assert_array_equal(clf.calibration_correct_[:, k], predicted == y)
    assert clf.reference_score_ == clf.calibration_correct_[:, -1].mean()
    assert clf.calibration_score_ >= clf.reference_score_ - clf.max_score_drop - 1e-12


def test_exits_are_ordered_by_forward_cost_and_costs_are_the_forward_shares():
    X, y, _, _ = digits_data()
    extractor = LayerFeatureTransformer(float64_mlp(), cache=None)
    clf = EarlyExitClassifier(extractor, exits=["4", "1", "3"], cv=3).fit(X, y)
    assert clf.exit_layers_ == ["1", "3", "4"]
    fitted_extractor = clf.extractor_
    shares, unit = forward_shares(fitted_extractor.model_, first_row(fitted_extractor, X),
                                  clf.exit_layers_)
    assert_allclose(clf.exit_costs_, [shares[n] for n in clf.exit_layers_])
    assert unit == clf.cost_unit_ == "flops"
    assert clf.exit_costs_[-1] == 1.0


def reference_predictions(clf, X):
    """Each row's exit (from every exit's features) and its exit head's output."""
    features = clf.extractor_.transform(X)
    slices = clf.extractor_.feature_slices_
    per_exit = [features[:, slices[n]] for n in clf.exit_layers_]
    conf = np.column_stack([h.predict_proba(F).max(axis=1)
                            for h, F in zip(clf.estimators_, per_exit)])
    exits = first_exits(conf, clf.thresholds_)
    labels = np.array([clf.estimators_[k].predict(per_exit[k][i:i + 1])[0]
                       for i, k in enumerate(exits)])
    proba = np.vstack([clf.estimators_[k].predict_proba(per_exit[k][i:i + 1])
                       for i, k in enumerate(exits)])
    return exits, labels, proba


@pytest.mark.parametrize("batch_size", [1, 7, 64])
@pytest.mark.parametrize("stages", ["planned", "every exit"])
def test_predictions_are_each_rows_exit_head_whatever_the_batching(batch_size, stages):
    clf, X_test, _ = fitted()
    exits, labels, proba = reference_predictions(clf, X_test)
    assert len(np.unique(exits)) >= 2, "the test needs rows leaving at several exits"
    clf.extractor_.set_params(batch_size=batch_size)
    if stages == "every exit":
        clf._stages = tuple(range(len(clf.exit_layers_)))
    predicted, exit_names = clf.predict(X_test, return_exit=True)
    assert_array_equal(exit_names, np.asarray(clf.exit_layers_, dtype=object)[exits])
    assert_array_equal(predicted, labels)
    assert_allclose(clf.predict_proba(X_test), proba, rtol=1e-12, atol=1e-15)
    one_by_one = np.concatenate([clf.predict(X_test[i:i + 1]) for i in range(20)])
    assert_array_equal(one_by_one, labels[:20])


def exit_indices(clf, names):
    index = {name: k for k, name in enumerate(clf.exit_layers_)}
    return np.array([index[name] for name in names])




@pytest.mark.parametrize("batch_size", [1, 16])
def test_the_forward_runs_only_as_deep_as_the_rows_need(batch_size):
    net = Widening()
    X, y, X_test, _ = digits_data()
    extractor = LayerFeatureTransformer(net, cache=None, batch_size=batch_size)
    clf = EarlyExitClassifier(extractor, max_score_drop=0.02, cv=3).fit(X, y)
    # rows reaching a (every forward), b (past exit a) and c (past exit b)
    counters = [RowCounter(net.a), RowCounter(net.b), RowCounter(net.c)]
    try:
        _, exit_names = clf.predict(X_test, return_exit=True)
        exits = exit_indices(clf, exit_names)
        rows = [c.take() for c in counters]
    finally:
        for c in counters:
            c.remove()
    # replay the stages: each batch runs to its deepest exit, or to the stage's end
    expected = [0, 0, 0]
    pending = exits
    for stop in clf._stages if batch_size > 1 else (2,):
        for lo in range(0, pending.size, batch_size):
            depth = min(pending[lo:lo + batch_size].max(), stop)
            n = pending[lo:lo + batch_size].size
            expected[0] += n
            expected[1] += n * (depth >= 1)
            expected[2] += n * (depth >= 2)
        pending = pending[pending > stop]
    assert rows == expected
    if batch_size == 1:  # one row at a time: exactly the rows leaving later
        assert rows[1] == np.sum(exits >= 1) and rows[2] == np.sum(exits >= 2)
        assert 0 < rows[2] < rows[1] < len(X_test)


def test_a_large_drop_sends_every_row_out_at_the_first_exit_without_deeper_layers():
    net = float64_mlp()
    X, y, X_test, _ = digits_data()
    clf = EarlyExitClassifier(LayerFeatureTransformer(net, cache=None),
                              max_score_drop=1.0, cv=3).fit(X, y)
    counter = RowCounter(net[2])
    try:
        _, exits = clf.predict(X_test, return_exit=True)
        assert counter.take() == 0
    finally:
        counter.remove()
    assert set(exits) == {"1"}
    assert clf.expected_cost_ == pytest.approx(clf.exit_costs_[0])
    assert clf.exit_fractions_ == {"1": 1.0, "3": 0.0, "4": 0.0}


def test_the_network_is_left_as_found():
    net = float64_mlp().train()
    X, y, X_test, _ = digits_data()
    clf = EarlyExitClassifier(net, cv=3).fit(X, y)
    clf.predict(X_test)
    assert net.training and all(m.training for m in net.modules())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_validation_rows_calibrate_instead_of_cross_fitting():
    X, y, X_test, y_test = digits_data()
    clf = EarlyExitClassifier(LayerFeatureTransformer(float64_mlp(), cache=None))
    clf.fit(X, y, X_val=X_test, y_val=y_test)
    assert clf.calibration_confidences_.shape == (len(y_test), 3)
    features = clf.extractor_.transform(X_test)
    last = clf.extractor_.feature_slices_[clf.exit_layers_[-1]]
    expected = clf.estimators_[-1].predict(features[:, last]) == y_test
    assert_array_equal(clf.calibration_correct_[:, -1], expected)
    with pytest.raises(ValueError, match="both X_val and y_val"):
        clf.fit(X, y, X_val=X_test)


def test_bad_inputs_get_clear_errors():
    X, y, _, _ = digits_data()
    with pytest.raises(ValueError, match="predict_proba"):
        EarlyExitClassifier(float64_mlp(), estimator=LinearSVC()).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        EarlyExitClassifier(float64_mlp()).fit(X, np.zeros(len(X)))


def test_grid_search_over_max_score_drop_and_pipeline():
    X, y, X_test, y_test = digits_data(300)
    pipe = make_pipeline(StandardScaler(), EarlyExitClassifier(float64_mlp(), cv=2))
    grid = GridSearchCV(pipe, {"earlyexitclassifier__max_score_drop": [0.0, 1.0]}, cv=2)
    grid.fit(X, y)
    assert set(grid.cv_results_["param_earlyexitclassifier__max_score_drop"]) == {0.0, 1.0}
    best = grid.best_estimator_[-1]
    assert best.max_score_drop == grid.best_params_["earlyexitclassifier__max_score_drop"]
    assert grid.predict(X_test).shape == y_test.shape
    # the parameter reaches the calibration: 1.0 sends every row out at the first exit
    cheap = clone(pipe).set_params(earlyexitclassifier__max_score_drop=1.0).fit(X, y)[-1]
    assert cheap.expected_cost_ == cheap.exit_costs_[0] < best.exit_costs_[-1]


def test_pickles_and_predicts_in_a_fresh_process(tmp_path):
    clf, X_test, _ = fitted(net=float64_mlp())  # a network the fresh process can import
    expected, exits = clf.predict(X_test, return_exit=True)
    restored = pickle.loads(pickle.dumps(clf))
    assert_array_equal(restored.predict(X_test), expected)
    (tmp_path / "clf.pkl").write_bytes(pickle.dumps(clf))
    np.save(tmp_path / "X.npy", X_test)
    code = (
        "import pickle, sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "clf = pickle.load(open(d + '/clf.pkl', 'rb'))\n"
        "y, e = clf.predict(np.load(d + '/X.npy'), return_exit=True)\n"
        "np.save(d + '/y.npy', y); np.save(d + '/e.npy', e.astype(str))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, cwd=REPO,
                   timeout=300)
    assert_array_equal(np.load(tmp_path / "y.npy"), expected)
    assert_array_equal(np.load(tmp_path / "e.npy"), exits.astype(str))


def test_the_users_extractor_is_not_fitted_and_settings_reach_extraction():
    X, y, _, _ = digits_data(200)
    extractor = LayerFeatureTransformer(float64_mlp(), cache=None, pooling="max")
    clf = EarlyExitClassifier(extractor, cv=3).fit(X, y)
    assert not hasattr(extractor, "model_")
    assert clf.extractor_.pooling == "max" and clf.extractor_.model_ is extractor.model


# ---------------------------------------------------------------- display


def test_display_reproduces_the_fitted_operating_point():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    clf, X_test, y_test = fitted()
    display = EarlyExitDisplay.from_estimator(clf, max_score_drops=[clf.max_score_drop])
    assert display.scores[0] == pytest.approx(clf.calibration_score_)
    assert display.costs[0] == pytest.approx(clf.expected_cost_)
    assert_allclose(display.layer_scores, [clf.exit_scores_[n] for n in clf.exit_layers_])
    on_test = EarlyExitDisplay.from_estimator(clf, X_test, y_test,
                                              max_score_drops=[clf.max_score_drop])
    predicted, exits = clf.predict(X_test, return_exit=True)
    assert on_test.scores[0] == pytest.approx(np.mean(predicted == y_test))
    spent = clf.exit_costs_[exit_indices(clf, exits)].mean()
    assert on_test.costs[0] == pytest.approx(spent)
    assert on_test.pareto_front_ and set(on_test.pareto_front_) <= set(clf.exit_layers_)
    matplotlib.pyplot.close("all")


def test_cached_rows_are_decided_from_the_cache_exactly_as_computed_ones():
    X, y, _, _ = digits_data()
    net = Widening()
    counter = RowCounter(net.a)  # registered before the first extraction (identity)
    try:
        clf = EarlyExitClassifier(LayerFeatureTransformer(net, cache=MemoryCache()),
                                  max_score_drop=0.02, cv=3).fit(X, y)
        counter.take()
        served = clf.predict_proba(X), clf.predict(X, return_exit=True)
        assert counter.take() == 0  # every training row is cached: no forward at all
        clf.extractor_.set_params(cache=None)
        computed = clf.predict_proba(X), clf.predict(X, return_exit=True)
        assert counter.take() >= 2 * len(X)  # two calls, every row computed
    finally:
        counter.remove()
    assert_allclose(served[0], computed[0], rtol=1e-12, atol=1e-15)
    assert_array_equal(served[1][0], computed[1][0])
    assert_array_equal(served[1][1], computed[1][1])


def grid_rows(values):
    """Rows a grid search over ``max_score_drop`` sends through the network."""
    X, y, _, _ = digits_data(300)
    net = Widening()
    counter = RowCounter(net.a)
    try:
        extractor = LayerFeatureTransformer(net, cache=MemoryCache())
        GridSearchCV(EarlyExitClassifier(extractor, cv=2), {"max_score_drop": values},
                     cv=2).fit(X, y)
        return counter.take()
    finally:
        counter.remove()


def test_grid_candidates_after_the_first_run_no_forward_pass():
    # scoring serves rows its fits extracted; the rows of the first candidate's
    # first test fold, not extracted yet, run once with early exit (never stored)
    one, three = grid_rows([0.0]), grid_rows([0.0, 0.02, 1.0])
    # each extra fit (2 candidates x 2 folds) runs one row to count the FLOPs
    assert three - one == 2 * 2


def test_one_exit_is_that_layers_head_and_runs_no_deeper():
    X, y, X_test, _ = digits_data()
    net = Widening()
    clf = EarlyExitClassifier(LayerFeatureTransformer(net, cache=None), exits="b",
                              cv=3).fit(X, y)
    assert clf.exit_layers_ == ["b"] and clf.stages_ == ("b",)
    assert clf.expected_cost_ == clf.exit_costs_[0] < 1.0
    counter = RowCounter(net.c)
    try:
        predicted = clf.predict(X_test)
        assert counter.take() == 0
    finally:
        counter.remove()
    head = clone(clf._estimator()).fit(clf.extractor_.transform(X), y)
    assert_array_equal(predicted, head.predict(clf.extractor_.transform(X_test)))


def test_a_cv_that_leaves_rows_out_of_every_test_fold_is_refused():
    X, y, _, _ = digits_data(200)
    half = np.arange(100)
    with pytest.raises(ValueError, match="every row in a test fold"):
        EarlyExitClassifier(float64_mlp(), cv=[(half + 100, half)]).fit(X, y)


def test_bfloat16_rows_are_served_from_the_cache_too():
    X, y, _, _ = digits_data()
    net = Widening()
    counter = RowCounter(net.a)  # registered before the first extraction (identity)
    try:
        extractor = LayerFeatureTransformer(net, cache=MemoryCache(), precision="bfloat16")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # bfloat16 emulated on some CPUs
            clf = EarlyExitClassifier(extractor, max_score_drop=0.02, cv=3).fit(X, y)
            counter.take()
            clf.predict(X)
        assert counter.take() == 0  # every training row is cached: no forward at all
    finally:
        counter.remove()
