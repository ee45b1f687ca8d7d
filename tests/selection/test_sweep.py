"""layer_sweep: the table, one forward pass per row, named estimators, intervals."""

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import NearestCentroid

from sklearn_layers import LayerFeatureTransformer, MemoryCache, layer_sweep
from sklearn_layers._selection import default_probe
from sklearn_layers.utils.toy import make_small_cnn

from _helpers import RowCounter


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 1, 12, 12)).astype(np.float32)
    y = np.arange(90) % 3
    X[y == 1, :, :6] += 1.0
    X[y == 2, :, 6:] += 1.0
    X_shift = X + rng.normal(0, 1.0, X.shape).astype(np.float32)
    return X, y, X_shift


def test_layer_sweep_table_and_one_forward_per_row(images):
    X, y, X_shift = images
    net = make_small_cnn(n_classes=3)
    counter = RowCounter(net[0])
    estimators = [("logistic", default_probe()), ("centroid", NearestCentroid())]
    extractor = LayerFeatureTransformer(net, cache=MemoryCache())
    test_sets = {"id": (X[60:], y[60:]), "shifted": (X_shift[60:], y[60:])}
    table = layer_sweep(extractor, X[:60], y[:60], estimators=estimators, cv=3,
                        test_sets=test_sets, cost_sample=0)
    # each distinct row once, all layers, all folds; one more row counts FLOPs
    assert counter.take() == 60 + 30 + 30 + 1
    layer_sweep(extractor, X[:60], y[:60], estimators=[("c", NearestCentroid())], cv=2,
                test_sets=test_sets, cost_sample=0)
    assert counter.take() == 1
    counter.remove()
    assert list(table.columns) == [
        "layer", "layer_index", "head", "split", "score", "score_std", "score_low",
        "score_high", "fit_time", "forward_share", "cost_unit", "seconds_per_row",
    ]
    assert len(table) == 4 * 2 * 3
    assert list(table["layer"].unique()) == ["2", "5", "9", "10"]
    assert set(table["split"]) == {"cv", "id", "shifted"}
    # a row of the table is exactly the head fitted on that layer's features
    lft = LayerFeatureTransformer(net, layers="5", cache=None)
    F_train, F_test = lft.fit_transform(X[:60]), lft.transform(X_shift[60:])
    expected = NearestCentroid().fit(F_train, y[:60]).score(F_test, y[60:])
    row = table[(table.layer == "5") & (table["head"] == "centroid") & (table.split == "shifted")]
    # an accuracy: the same predictions give the same fraction, a flipped one
    # moves it by 1/60, so there is nothing for a tolerance to absorb
    assert row["score"].item() == expected
    assert (table["fit_time"] >= 0).all()


def test_layer_sweep_names_estimators_as_given(images):
    X, y, _ = images
    table = layer_sweep(make_small_cnn(n_classes=3), X, y, layers=[0, -1],
                        estimators=[("near", NearestCentroid()), ("far", NearestCentroid())],
                        cv=2)
    assert set(table["head"]) == {"near", "far"}
    assert set(table["split"]) == {"cv"}


@pytest.mark.parametrize("estimators, message", [
    ([NearestCentroid()], "list of \\(name, estimator\\) tuples"),
    ([("a", NearestCentroid()), ("a", NearestCentroid())], "'a' appears twice"),
    ({"a": NearestCentroid()}, "'estimators' parameter of layer_sweep"),
])
def test_layer_sweep_refuses_badly_named_estimators(images, estimators, message):
    X, y, _ = images
    with pytest.raises((ValueError, TypeError), match=message):
        layer_sweep(make_small_cnn(n_classes=3), X, y, estimators=estimators, cv=2)


def test_layer_sweep_validates_its_parameters(images):
    X, y, _ = images
    with pytest.raises(ValueError, match="'n_bootstrap' parameter of layer_sweep"):
        layer_sweep(make_small_cnn(n_classes=3), X, y, n_bootstrap=-1)


class ConstantScore(NearestCentroid):
    """A head whose own score is not its accuracy."""

    def score(self, X, y, sample_weight=None):
        return 0.25


def test_the_bootstrap_interval_scores_with_the_point_scores_function(images):
    # scoring=None: the point score is the head's own score; the bootstrap
    # interval once scored accuracy through ClassifierMixin.score instead
    X, y, X_shift = images
    table = layer_sweep(make_small_cnn(n_classes=3), X[:60], y[:60],
                        estimators=[("constant", ConstantScore())], layers=[0],
                        test_sets={"shifted": (X_shift[60:], y[60:])}, cost_sample=0)
    row = table.iloc[0]
    assert row["score"] == row["score_low"] == row["score_high"] == 0.25


def test_named_scorers_bootstrap_the_same_as_rescoring(images):
    from sklearn.metrics import check_scoring

    from sklearn_layers._selection._intervals import LayerScorer, bootstrap_interval

    X, y, X_shift = images
    lft = LayerFeatureTransformer(make_small_cnn(n_classes=3), layers="5", cache=None)
    F, F_test = lft.fit_transform(X[:60]), lft.transform(X_shift[60:])
    fitted = default_probe().fit(F, y[:60])
    for scoring in ("accuracy", "neg_log_loss", None):
        fast = bootstrap_interval(LayerScorer(fitted, scoring), fitted, F_test, y[60:],
                                  n_bootstrap=50, random_state=0)
        slow = bootstrap_interval(check_scoring(fitted, scoring=scoring), fitted, F_test,
                                  y[60:], n_bootstrap=50, random_state=0)
        # the same metric on the same outputs, row for row
        assert fast == pytest.approx(slow, rel=1e-12)


def test_the_users_extractor_is_never_fitted(images):
    X, y, _ = images
    lft = LayerFeatureTransformer(make_small_cnn(n_classes=3), pooling="max", cache=None)
    table = layer_sweep(lft, X, y, layers=[0, -1], cv=2, cost_sample=4)
    assert not hasattr(lft, "model_") and lft.layers == "penultimate"
    expected = LayerFeatureTransformer(lft.model, layers=[0], pooling="max",
                                       cache=None).fit_transform(X)
    scores = cross_val_score(default_probe(), expected, y, cv=2)
    assert table["score"].iloc[0] == pytest.approx(scores.mean(), rel=1e-12)




def test_one_bar_for_extraction_and_one_for_fits(images, monkeypatch):
    import tqdm

    X, y, X_shift = images
    bars = []

    class Recorder(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, disable=True, **kwargs)
            self.what = kwargs.get("unit")
            bars.append(self)

    monkeypatch.setattr(tqdm, "tqdm", Recorder)
    net = make_small_cnn(n_classes=3)
    layer_sweep(LayerFeatureTransformer(net, cache=MemoryCache(), verbose=1), X[:60], y[:60],
                estimators=[("c", NearestCentroid())], cv=3,
                test_sets={"id": (X[60:], y[60:]), "shifted": (X_shift[60:], y[60:])},
                cost_sample=0, verbose=1)
    assert [b.what for b in bars] == ["rows", "fit"]
    assert bars[0].total == 119  # train and both test sets once (fit computed row 0)
    assert bars[1].total == 4 * 1 * 4  # layers x heads x (3 folds + held-out fit)
