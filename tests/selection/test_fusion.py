"""LayerFusionClassifier: each fusion against its reference, and one forward per row."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402
from scipy.special import softmax  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.ensemble import StackingClassifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GridSearchCV, StratifiedKFold  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402
from sklearn.svm import LinearSVC  # noqa: E402
from torch import nn  # noqa: E402

from sklearn_layers import (  # noqa: E402
    ConcatFusion,
    LayerFeatureTransformer,
    LayerFusionClassifier,
    MemoryCache,
    StackingFusion,
    WeightedFusion,
)
from sklearn_layers._selection import default_probe  # noqa: E402
from sklearn_layers.utils.toy import make_mlp, make_small_cnn  # noqa: E402

from _helpers import RowCounter, assert_unchanged, snapshot  # noqa: E402


class Views(nn.Module):
    """Layer ``view<i>`` passes through input columns ``[i*d, (i+1)*d)``; then a head."""

    def __init__(self, n_views, width):
        super().__init__()
        self.width = width
        for i in range(n_views):
            setattr(self, f"view{i}", nn.Identity())
        self.n_views = n_views
        self.head = nn.Linear(n_views * width, 2)

    def forward(self, x):
        views = [getattr(self, f"view{i}")(x[:, i * self.width:(i + 1) * self.width])
                 for i in range(self.n_views)]
        return self.head(torch.cat(views, dim=1))


def signal_and_noise(n, width, seed, n_classes=3):
    """Columns ``[0, width)`` carry the class (a mean shift); the next ``width`` are noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    means = rng.normal(0, 1.5, (n_classes, width))
    signal = means[y] + rng.normal(0, 1.0, (n, width))
    noise = rng.normal(0, 1.0, (n, width)) * 3.0 + 5.0  # its own scale: standardised away
    return np.hstack([signal, noise]).astype(np.float32), y


def images(n=90, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1, 12, 12)).astype(np.float32)
    y = np.arange(n) % 3
    X[y == 1, :, :6] += 1.0
    X[y == 2, :, 6:] += 1.0
    return X, y


# --- "concat" and "stack" against scikit-learn ------------------------------------


def test_concat_is_the_probe_on_the_layers_side_by_side():
    X, y = images()
    net = make_small_cnn(n_classes=3)
    layers = ["2", "5", "9"]
    cache = MemoryCache()  # the same features on both sides, bit for bit
    fused = LayerFusionClassifier(LayerFeatureTransformer(net, cache=cache), layers=layers,
                                  fusion=ConcatFusion())
    fused.fit(X[:60], y[:60])
    by_hand = Pipeline([
        ("features", LayerFeatureTransformer(net, layers=layers, cache=cache)),
        ("probe", default_probe()),
    ]).fit(X[:60], y[:60])
    assert_array_equal(fused.predict(X[60:]), by_hand.predict(X[60:]))
    assert_allclose(fused.predict_proba(X[60:]), by_hand.predict_proba(X[60:]),
                    rtol=1e-6, atol=1e-9)
    assert fused.layer_names_ == layers
    assert not hasattr(fused.fusion_, "layer_weights_")


def test_the_users_estimators_see_the_labels():
    # A class_weight keyed by the labels must reach an estimator fitted on
    # those labels, not on class codes.
    X, y = images()
    labels = np.array(["cat", "dog", "eel"])[y]
    probe = default_probe().set_params(class_weight={"cat": 1.0, "dog": 5.0, "eel": 1.0})
    concat = LayerFusionClassifier(make_small_cnn(n_classes=3), layers=["2", "5"],
                                   fusion=ConcatFusion(probe)).fit(X, labels)
    assert_array_equal(concat.fusion_.estimator_.classes_, ["cat", "dog", "eel"])
    assert set(concat.predict(X)) <= {"cat", "dog", "eel"}
    # stacking: every estimator, the cross-fitted copies included, sees the
    # labels (cross_val_predict would encode them, and a class_weight dict
    # keyed by the labels failed with "The classes, [0, 1, 2], are not in
    # class_weight")
    stack = LayerFusionClassifier(make_small_cnn(n_classes=3), layers=["2", "5"],
                                  fusion=StackingFusion(probe, cv=3)).fit(X, labels)
    for estimator in [*stack.fusion_.estimators_, stack.fusion_.final_estimator_]:
        assert_array_equal(estimator.classes_, ["cat", "dog", "eel"])
    weights = {"cat": 10, "dog": 1, "eel": 1}
    weighted = LayerFusionClassifier(
        make_small_cnn(n_classes=3), layers=["2", "5"],
        fusion=StackingFusion(LogisticRegression(class_weight=weights, max_iter=1000), cv=3),
    ).fit(X, labels)
    assert all(e.class_weight == weights for e in weighted.fusion_.estimators_)
    assert set(weighted.predict(X)) <= {"cat", "dog", "eel"}
    assert_array_equal(stack.classes_[stack.predict_proba(X).argmax(axis=1)],
                       stack.predict(X))


def _select(cols):
    return FunctionTransformer(lambda F: F[:, cols])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_stack_equals_stacking_classifier_on_per_layer_features(n_classes):
    X, y = images(120, seed=1)
    keep = y < n_classes
    X, y = X[keep], np.array(["cat", "dog", "eel"])[y[keep]]
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    net = make_small_cnn(n_classes=3)
    cv = StratifiedKFold(3)
    cache = MemoryCache()
    fused = LayerFusionClassifier(LayerFeatureTransformer(net, cache=cache), layers="all",
                                  fusion=StackingFusion(cv=cv))
    fused.fit(X[::2], y[::2])
    lft = LayerFeatureTransformer(net, layers="all", cache=cache)
    F_train, F_test = lft.fit_transform(X[::2]), lft.transform(X[1::2])
    stacking = StackingClassifier(
        [(layer, make_pipeline(_select(cols), default_probe()))
         for layer, cols in lft.feature_slices_.items()],
        final_estimator=LogisticRegression(), cv=cv,
    ).fit(F_train, y[::2])
    assert fused.fusion_.stack_method_ == "predict_proba"
    assert len(fused.fusion_.estimators_) == len(lft.layer_names_) == 4
    assert_array_equal(fused.predict(X[1::2]), stacking.predict(F_test))
    assert_allclose(fused.predict_proba(X[1::2]), stacking.predict_proba(F_test),
                    rtol=1e-6, atol=1e-9)
    assert_allclose(fused.decision_function(X[1::2]), stacking.decision_function(F_test),
                    rtol=1e-6, atol=1e-9)
    assert list(fused.classes_) == list(stacking.classes_)


def test_stack_reads_the_decision_function_when_there_is_no_proba():
    X, y = images()
    fused = LayerFusionClassifier(make_small_cnn(n_classes=3),
                                  fusion=StackingFusion(LinearSVC(), cv=3)).fit(X, y)
    assert fused.fusion_.stack_method_ == "decision_function"
    assert fused.predict_proba(X).shape == (90, 3)


def test_optional_methods_follow_the_estimator():
    X, y = images()
    net = make_small_cnn(n_classes=3)
    concat = LayerFusionClassifier(net, fusion=ConcatFusion(LinearSVC()))
    assert not hasattr(concat, "predict_proba")
    assert hasattr(concat, "decision_function")
    concat.fit(X, y)
    assert not hasattr(concat, "predict_proba")
    assert concat.decision_function(X).shape == (90, 3)
    stack = LayerFusionClassifier(net, fusion=StackingFusion(final_estimator=LinearSVC()))
    assert not hasattr(stack, "predict_proba")
    assert hasattr(LayerFusionClassifier(net), "predict_proba")  # stacking by default
    weighted = LayerFusionClassifier(net, fusion=WeightedFusion())
    assert all(hasattr(weighted, m) for m in
               ("predict_proba", "predict_log_proba", "decision_function"))


# --- "weighted" against a hand computation ---------------------------------------


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("C", [0.05, 1.0])
def test_one_layer_weighted_fusion_is_a_logistic_regression_on_standardised_features(
    n_classes, C
):
    # the penalty is LogisticRegression's C for two classes as for more (it
    # was alpha, which for two classes matched C = 2 / (alpha n), not 1 / (alpha n))
    X, y = signal_and_noise(150, 4, seed=0, n_classes=n_classes)
    fused = LayerFusionClassifier(
        Views(2, 4), layers=["view0"], fusion=WeightedFusion(C=C, tol=1e-9, random_state=0)
    ).fit(X, y)
    assert_array_equal(fused.fusion_.layer_weights_, [1.0])
    F = X[:, :4].astype(np.float64)  # float32 features would fit in float32
    reference = make_pipeline(
        StandardScaler(), LogisticRegression(C=C, tol=1e-12, max_iter=10_000)
    ).fit(F, y)
    # Both solutions are within gradient 1e-9 of the optimum; the objective is
    # at least 1/(C n)-strongly convex in W, so parameters agree to ~1e-7 and
    # probabilities (features of magnitude ~3) to well under 1e-5.
    assert_allclose(fused.predict_proba(X), reference.predict_proba(F), atol=1e-5)
    assert_allclose(fused.decision_function(X), reference.decision_function(F), atol=1e-4)
    assert_array_equal(fused.predict(X), reference.predict(F))


def test_a_pure_noise_layer_gets_almost_no_weight():
    X, y = signal_and_noise(300, 4, seed=1)
    # C = 1 / (1e-3 * 300): the penalty this test was written for
    fusion = WeightedFusion(C=1 / (1e-3 * 300), random_state=0)
    fused = LayerFusionClassifier(Views(2, 4), layers=["view0", "view1"],
                                  fusion=fusion).fit(X, y)
    weights = fused.fusion_.layer_weights_
    assert weights.shape == (2,)
    assert weights.sum() == pytest.approx(1.0, abs=1e-12)
    # mixing in noise blurs the signal; only what the noise happens to fit of
    # 300 training labels keeps its optimal weight above 0 (here 0.022)
    assert weights[1] < 0.05
    swapped = LayerFusionClassifier(Views(2, 4), layers=["view1", "view0"],
                                    fusion=fusion).fit(X, y)
    assert_allclose(swapped.fusion_.layer_weights_, weights[::-1], atol=1e-3)


def test_prediction_is_the_mix_of_standardised_layers_by_hand():
    X, y = signal_and_noise(120, 3, seed=2)
    fused = LayerFusionClassifier(Views(2, 3), layers=["view0", "view1"],
                                  fusion=WeightedFusion(random_state=0)).fit(X[:90], y[:90])
    fusion = fused.fusion_
    mixed = 0.0
    for weight, cols in zip(fusion.layer_weights_, (slice(0, 3), slice(3, 6))):
        F = X[:90, cols].astype(np.float64)
        z = (X[90:, cols] - F.mean(axis=0)) / F.std(axis=0)
        mixed = mixed + weight * z
    logits = mixed @ fusion.coef_.T + fusion.intercept_
    assert_allclose(fused.decision_function(X[90:]), logits, rtol=1e-5, atol=1e-6)
    assert_allclose(fused.predict_proba(X[90:]), softmax(logits, axis=1), rtol=1e-5,
                    atol=1e-7)
    assert_allclose(fused.predict_log_proba(X[90:]), np.log(softmax(logits, axis=1)),
                    rtol=1e-5, atol=1e-6)
    assert_array_equal(fused.predict(X[90:]), np.argmax(logits, axis=1))


def test_binary_decision_function_is_the_positive_class_logit():
    X, y = signal_and_noise(100, 3, seed=3, n_classes=2)
    labels = np.array(["no", "yes"])[y]
    fused = LayerFusionClassifier(Views(2, 3), layers=["view0", "view1"],
                                  fusion=WeightedFusion(random_state=0)).fit(X, labels)
    proba = fused.predict_proba(X)
    scores = fused.decision_function(X)
    assert scores.shape == (100,)
    assert fused.fusion_.coef_.shape == (1, 3)  # one logit, as LogisticRegression
    assert_allclose(scores, np.log(proba[:, 1] / proba[:, 0]), rtol=1e-6, atol=1e-8)
    assert set(fused.predict(X)) <= {"no", "yes"}


def test_layers_of_different_widths_are_projected_to_the_narrowest():
    X, y = images()
    net = make_small_cnn(n_classes=3)  # blocks of width 8, 16, 32, 3
    fused = LayerFusionClassifier(net, layers=["2", "5", "9"],
                                  fusion=WeightedFusion(random_state=0)).fit(X, y)
    assert fused.fusion_.equal_width_.width_ == 8
    Z = fused.fusion_.equal_width_.transform(
        [fused.extractor_.transform(X)[:, cols]
         for cols in fused.extractor_.feature_slices_.values()])
    assert Z.shape == (3, 90, 8)
    # each projected layer has a mean feature variance of 1 on the training rows
    assert_allclose(Z.var(axis=1, ddof=1).mean(axis=1), 1.0, rtol=1e-6)
    wide = LayerFusionClassifier(net, layers=["2", "5", "9"],
                                 fusion=WeightedFusion(n_components=9))
    with pytest.raises(ValueError, match="n_components=9 is wider than the narrowest layer"):
        wide.fit(X, y)


def test_weighted_fusion_is_deterministic_given_random_state():
    X, y = images()
    net = make_small_cnn(n_classes=3)
    first = LayerFusionClassifier(net, fusion=WeightedFusion(random_state=3)).fit(X, y)
    again = LayerFusionClassifier(net, fusion=WeightedFusion(random_state=3)).fit(X, y)
    assert_array_equal(first.fusion_.layer_weights_, again.fusion_.layer_weights_)
    assert_array_equal(first.predict_proba(X), again.predict_proba(X))
    assert first.fusion_.n_iter_ >= 1


def test_too_few_iterations_warn():
    X, y = signal_and_noise(60, 3, seed=4)
    with pytest.warns(ConvergenceWarning, match=r"did not converge.*max_iter=2"):
        LayerFusionClassifier(Views(2, 3), layers=["view0", "view1"],
                              fusion=WeightedFusion(max_iter=2, random_state=0)).fit(X, y)


# --- the network, the cache, clones --------------------------------------------


def test_a_grid_over_fusion_and_layers_runs_each_row_once():
    X, y = images(90, seed=2)
    net = make_small_cnn(n_classes=3)
    counter = RowCounter(net[0])  # before the first extraction: part of the cache key
    fused = LayerFusionClassifier(LayerFeatureTransformer(net, cache=MemoryCache()))
    grid = GridSearchCV(fused, {"fusion": [WeightedFusion(random_state=0), ConcatFusion(),
                                           StackingFusion(cv=2)],
                                "layers": [["2", "5"], "all"]}, cv=3)
    grid.fit(X, y)
    assert counter.rows == len(X)
    assert grid.best_estimator_.score(X, y) > 0.5
    counter.remove()


def test_the_network_is_shared_and_unchanged():
    X, y = images()
    net = make_small_cnn(n_classes=3)
    before = snapshot(net)
    fused = LayerFusionClassifier(net, fusion=StackingFusion(cv=2))
    assert clone(fused).extractor is net
    fused.fit(X, y).predict(X)
    assert fused.extractor_.model_ is net
    assert_unchanged(net, before)


def test_a_factory_builds_one_network_per_fit():
    from sklearn.datasets import load_iris

    calls = []

    def factory(n_features):
        calls.append(n_features)
        return make_mlp(n_features, hidden=(16,), seed=len(calls))

    X, y = load_iris(return_X_y=True)
    fused = LayerFusionClassifier(factory, fusion=WeightedFusion(random_state=0)).fit(X, y)
    fused.predict(X)
    assert calls == [4]


def test_bad_input_is_refused_clearly():
    X, y = images(30)
    net = make_small_cnn(n_classes=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LayerFusionClassifier(net).fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="'fusion' parameter"):
        LayerFusionClassifier(net, fusion="weighted").fit(X, y)
    with pytest.raises(ValueError, match="'C' parameter of WeightedFusion"):
        LayerFusionClassifier(net, fusion=WeightedFusion(C=0)).fit(X, y)
    with pytest.raises(ValueError, match="'cv' parameter of StackingFusion"):
        LayerFusionClassifier(net, fusion=StackingFusion(cv="five")).fit(X, y)
    with pytest.raises(ValueError, match="30 samples but y has 29"):
        LayerFusionClassifier(net).fit(X, y[:29])


def test_the_strategy_is_cloned_and_the_users_left_unfitted():
    X, y = images(60)
    strategy = StackingFusion(cv=2)
    fused = LayerFusionClassifier(make_small_cnn(n_classes=3), layers=["2", "5"],
                                  fusion=strategy).fit(X, y)
    assert fused.fusion_ is not strategy and not hasattr(strategy, "estimators_")
    assert fused.get_params()["fusion__cv"] == 2  # a grid reaches it as fusion__cv


def test_the_default_fusion_is_stacking():
    X, y = images(60)
    fused = LayerFusionClassifier(make_small_cnn(n_classes=3), layers=["2", "5"]).fit(X, y)
    assert isinstance(fused.fusion_, StackingFusion)
