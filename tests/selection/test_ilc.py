import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from torch import nn

from sklearn_layers import (
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    layer_sweep,
)
from sklearn_layers._selection import default_probe
from sklearn_layers._transformer import first_row
from sklearn_layers.utils.toy import make_small_cnn

from _helpers import RowCounter

ILC = IntermediateLayerClassifier  # short name for this file's many calls


class TwoViews(nn.Module):
    """Layer ``a`` sees input column 0, layer ``b`` column 1 (then a head)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 1, bias=False)
        self.b = nn.Linear(2, 1, bias=False)
        self.head = nn.Linear(2, 2)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[1.0, 0.0]]))
            self.b.weight.copy_(torch.tensor([[0.0, 1.0]]))

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def two_view_data(n, shifted, seed):
    """Column 0 predicts y in training only; column 1 predicts it everywhere, noisily."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x0 = (2 * y - 1) * 2.0 + rng.normal(0, 0.3, n)
    if shifted:
        x0 = rng.normal(0, 2.0, n)
    x1 = (2 * y - 1) * 1.0 + rng.normal(0, 0.8, n)
    return np.column_stack([x0, x1]).astype(np.float32), y


def test_best_layer_is_the_argmax_and_x_val_changes_it():
    X, y = two_view_data(300, shifted=False, seed=0)
    X_val, y_val = two_view_data(60, shifted=True, seed=1)
    ilc = ILC(TwoViews(), layers=["a", "b"], cv=3).fit(X, y)
    scores = ilc.layer_scores_
    assert ilc.best_layer_ == max(scores, key=scores.get) == "a"
    assert ilc.selection_ == "cv"
    assert set(ilc.layer_score_std_) == {"a", "b"}
    shifted = ILC(TwoViews(), layers=["a", "b"]).fit(
        X, y, X_val=X_val, y_val=y_val
    )
    assert shifted.best_layer_ == "b"
    assert shifted.selection_ == "validation"
    X_test, y_test = two_view_data(300, shifted=True, seed=2)
    assert shifted.score(X_test, y_test) > ilc.score(X_test, y_test) + 0.2


def test_layer_scores_are_cross_validation_of_the_head():
    X, y = two_view_data(120, shifted=False, seed=3)
    cv = StratifiedKFold(3)
    ilc = ILC(TwoViews(), layers=["a", "b"], cv=cv).fit(X, y)
    features = LayerFeatureTransformer(TwoViews(), layers="b", cache=None).fit_transform(X)
    expected = cross_val_score(default_probe(), features, y, cv=cv).mean()
    # the same features and folds give the same fold scores; only the order in
    # which three float64 scores are averaged may differ: gamma_3 in float64
    rel = 3 * np.finfo(float).eps
    assert ilc.layer_scores_["b"] == pytest.approx(expected, rel=rel)


def test_prediction_api_with_string_labels():
    X, y = two_view_data(150, shifted=False, seed=4)
    labels = np.array(["left", "right"])[y]
    ilc = ILC(TwoViews(), layers=["a", "b"], estimator=LogisticRegression(), cv=3).fit(
        X, labels
    )
    assert list(ilc.classes_) == ["left", "right"]
    assert set(ilc.predict(X)) <= {"left", "right"}
    proba = ilc.predict_proba(X)
    assert proba.shape == (150, 2)
    # LogisticRegression's binary [1 - p, p]: one subtraction, one sum
    assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=2 * np.finfo(float).eps)
    assert ilc.transform(X).shape == (150, 1)
    assert ilc.score(X, labels) > 0.9


def test_refit_false_has_no_estimator():
    X, y = two_view_data(60, shifted=False, seed=5)
    ilc = ILC(TwoViews(), layers=["a", "b"], cv=3, refit=False).fit(X, y)
    assert not hasattr(ilc, "estimator_")
    with pytest.raises(ValueError, match="refit=False"):
        ilc.predict(X)


def test_one_class_and_half_validation_set_are_refused():
    X, y = two_view_data(30, shifted=False, seed=6)
    with pytest.raises(ValueError, match="at least 2 classes"):
        ILC(TwoViews()).fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="both X_val and y_val"):
        ILC(TwoViews()).fit(X, y, X_val=X)


def test_clone_shares_the_network_or_clones_the_extractor():
    net = TwoViews()
    assert clone(ILC(net)).extractor is net
    lft = LayerFeatureTransformer(net, pooling="max")
    cloned = clone(ILC(lft)).extractor
    assert cloned is not lft and cloned.model is net and cloned.pooling == "max"


# --- one network per fit, NaN-safe choice, pandas output, optional methods ------


def test_a_factory_builds_one_network_per_fit():
    from sklearn.datasets import load_iris

    from sklearn_layers.utils.toy import make_mlp

    calls = []

    def factory(n_features):
        calls.append(n_features)
        return make_mlp(n_features, hidden=(16,), seed=len(calls))  # a new net each call

    X, y = load_iris(return_X_y=True)
    ilc = ILC(factory, cv=3).fit(X, y)
    assert calls == [4]
    assert ilc.score(X, y) >= ilc.best_score_ - 0.1  # the scored network predicts


class ScoreByLayer:
    """A scorer returning a fixed score per layer width (NaN for some)."""

    def __init__(self, by_width):
        self.by_width = by_width

    def __call__(self, estimator, X, y):
        return self.by_width[X.shape[1]]


def test_nan_never_wins_and_all_nan_is_an_error():
    X, y = two_view_data(60, shifted=False, seed=7)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    ilc = ILC(net, layers=["1", "3"], cv=2, scoring=ScoreByLayer({3: np.nan, 4: 0.5}))
    assert ilc.fit(X, y).best_layer_ == "3"
    all_nan = ScoreByLayer({3: np.nan, 4: np.nan})
    with pytest.raises(ValueError, match="Every layer scored NaN.*ScoreByLayer"):
        ILC(net, layers=["1", "3"], cv=2, scoring=all_nan).fit(X, y)
    # roc_auc on a validation set with a single class is undefined everywhere
    with pytest.raises(ValueError, match="scoring='roc_auc'"):
        ILC(net, layers=["1", "3"], scoring="roc_auc").fit(
            X, y, X_val=X[:5], y_val=np.zeros(5, dtype=int)
        )


def test_pandas_output_config_does_not_reach_internal_transformers():
    import warnings

    import sklearn

    X, y = two_view_data(80, shifted=False, seed=8)
    with sklearn.config_context(transform_output="pandas"):
        fitted = ILC(TwoViews(), layers=["a", "b"], cv=2).fit(X, y)
        table = layer_sweep(TwoViews(), X, y, layers=["a", "b"], cv=2, cost_sample=0)
        assert hasattr(fitted.transform(X), "columns")  # the user asked for pandas
    assert len(table) == 2
    ilc = ILC(TwoViews(), layers=["a", "b"], cv=2).fit(X, y)
    ilc.set_output(transform="pandas")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ilc.predict(X)
        ilc.predict_proba(X)


def test_optional_methods_follow_the_estimator():
    from sklearn.svm import LinearSVC

    X, y = two_view_data(60, shifted=False, seed=9)
    svc = ILC(TwoViews(), layers=["a", "b"], cv=2, estimator=LinearSVC())
    assert not hasattr(svc, "predict_proba")
    svc.fit(X, y)
    assert not hasattr(svc, "predict_proba") and not hasattr(svc, "predict_log_proba")
    assert svc.decision_function(X).shape == (60,)
    probe = ILC(TwoViews(), layers=["a", "b"], cv=2).fit(X, y)
    assert_allclose(probe.predict_log_proba(X), np.log(probe.predict_proba(X)), rtol=1e-6)
    assert probe.best_score_ == probe.layer_scores_[probe.best_layer_]


def test_extraction_settings_reach_the_extractors_and_the_users_is_untouched():
    X, y = two_view_data(40, shifted=False, seed=10)
    lft = LayerFeatureTransformer(TwoViews(), n_threads=1, max_length=7, batch_size=5)
    before = lft.get_params()
    ilc = ILC(lft, layers=["a", "b"], cv=2).fit(X, y)
    params = ilc.extractor_.get_params()
    assert params["n_threads"] == 1 and params["max_length"] == 7
    assert params["batch_size"] == 5 and params["prefetch"] is False
    assert params["layers"] == [ilc.best_layer_]
    assert ilc.extractor_ is not lft
    assert lft.get_params() == before  # never changed
    assert not hasattr(lft, "model_") and not hasattr(lft, "n_features_in_")  # never fitted


def test_a_grid_reaches_the_extractors_settings():
    from sklearn.model_selection import GridSearchCV

    images = np.random.default_rng(2).normal(size=(40, 1, 12, 12)).astype(np.float32)
    y = np.arange(40) % 2
    images[y == 1, :, :6] += 0.5
    lft = LayerFeatureTransformer(make_small_cnn(n_classes=2), cache=None)
    grid = GridSearchCV(ILC(lft, layers=["2", "5"], cv=2),
                        {"extractor__pooling": ["mean", "max"]}, cv=2).fit(images, y)
    best = grid.best_estimator_
    assert best.extractor.pooling == grid.best_params_["extractor__pooling"]
    assert best.extractor_.pooling == grid.best_params_["extractor__pooling"]
    expected = LayerFeatureTransformer(lft.model, layers=best.best_layer_,
                                       pooling=best.extractor.pooling,
                                       cache=None).fit_transform(images)
    assert_allclose(best.transform(images), expected)
    assert lft.pooling == "auto" and not hasattr(lft, "model_")  # the user's: untouched


def test_the_pooling_is_the_extractors():
    images = np.random.default_rng(1).normal(size=(30, 1, 12, 12)).astype(np.float32)
    y = np.arange(30) % 2
    net = make_small_cnn(n_classes=2)
    for pooling in ("mean", "max"):
        ilc = ILC(
            LayerFeatureTransformer(net, pooling=pooling, cache=None), layers=["2"], cv=2
        ).fit(images, y)
        expected = LayerFeatureTransformer(net, layers="2", pooling=pooling,
                                           cache=None).fit_transform(images)
        assert_allclose(ilc.transform(images), expected)


def test_fit_reads_and_validates_x_once(monkeypatch):
    from sklearn_layers import _transformer

    X, y = two_view_data(40, shifted=False, seed=17)
    reads = []
    original = _transformer.make_input

    def counting(X, **kwargs):
        reads.append(len(X))
        return original(X, **kwargs)

    monkeypatch.setattr(_transformer, "make_input", counting)
    ILC(TwoViews(), layers=["a", "b"], cv=2).fit(X, y)
    assert reads == [40]  # before: fit_transform twice, the cost row, the chosen layer's fit


# --- cost-aware choice and deployment ---------------------------------------------


class Deep(nn.Module):
    """Layer ``early`` carries the label as well as ``late``, at a fraction of the cost."""

    def __init__(self):
        super().__init__()
        self.early = nn.Linear(2, 2)
        self.middle = nn.Sequential(*[nn.Linear(2 if i == 0 else 64, 64) for i in range(4)])
        self.late = nn.Linear(64, 2)

    def forward(self, x):
        return self.late(self.middle(self.early(x)))


def test_selection_tolerance_picks_the_cheapest_good_layer():
    X, y = two_view_data(200, shifted=False, seed=11)
    net = Deep()
    plain = ILC(net, layers=["early", "late"], cv=3).fit(X, y)
    assert plain.layer_costs_["early"] < 0.05 < plain.layer_costs_["late"] == 1.0
    tolerant = ILC(net, layers=["early", "late"], cv=3, selection_tolerance=1.0).fit(X, y)
    assert tolerant.best_layer_ == "early"
    assert tolerant.cost_unit_ == "flops"


def test_prediction_runs_the_network_only_up_to_the_chosen_layer():
    X, y = two_view_data(80, shifted=False, seed=12)
    net = Deep()
    ilc = ILC(net, layers=["early", "late"], cv=2, selection_tolerance=1.0).fit(X, y)
    assert ilc.best_layer_ == "early"
    counter = RowCounter(net.late)
    X_new, _ = two_view_data(30, shifted=True, seed=13)
    ilc.predict(X_new)
    counter.remove()
    assert counter.rows == 0  # no prefetch of later blocks, early exit


def test_a_label_free_metric_chooses_without_fitting_heads():
    from sklearn_layers.metrics import effective_rank
    from sklearn_layers.utils.toy import make_mlp

    X, y = two_view_data(100, shifted=False, seed=14)
    net = make_mlp(2, hidden=(8, 2), n_outputs=2, seed=3)
    ilc = ILC(net, layers=["1", "3"], scoring="effective_rank").fit(X, y)
    assert ilc.selection_ == "metric"
    F = LayerFeatureTransformer(net, layers="1", cache=None).fit_transform(X)
    assert ilc.layer_scores_["1"] == pytest.approx(effective_rank(F))
    assert ilc.best_layer_ == "1"  # 8 features have more rank than 2
    lower = ILC(net, layers=["1", "3"], scoring="twonn_dimension").fit(X, y)
    assert lower.best_layer_ == min(lower.layer_scores_, key=lower.layer_scores_.get)


def test_a_metric_undefined_on_a_layer_never_chooses_it():
    X, y = two_view_data(60, shifted=False, seed=15)
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1), nn.ReLU(),
                        nn.Linear(1, 2))
    with torch.no_grad():
        net[2].bias.fill_(-100.0)  # layer "3" is all zeros: TwoNN has no neighbours
    with pytest.warns(RuntimeWarning, match="undefined on layer '3'"):
        ilc = ILC(net, layers=["1", "3"], scoring="twonn_dimension").fit(X, y)
    assert ilc.best_layer_ == "1" and np.isnan(ilc.layer_scores_["3"])


def test_costing_leaves_no_hook_behind_when_it_fails_midway(monkeypatch):
    from sklearn_layers._selection import _cost
    from sklearn_layers.utils.toy import make_mlp

    net = make_mlp(4, (8, 8, 8), 3)
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    lft = LayerFeatureTransformer(net, layers="all").fit(X)
    resolved = _cost.module_of
    calls = []

    def second_fails(model, name):
        calls.append(name)
        if len(calls) == 2:
            raise RuntimeError("injected")
        return resolved(model, name)

    monkeypatch.setattr(_cost, "module_of", second_fails)
    with pytest.raises(RuntimeError, match="injected"):
        _cost.forward_shares(net, first_row(lft, X), list(lft.feature_slices_))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())
