import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import NearestCentroid
from torch import nn

from _helpers import RowCounter
from sklearn_layers import (
    ILC,
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    MemoryCache,
    layer_sweep,
)
from sklearn_layers._selection import default_probe
from sklearn_layers.utils.toy import make_small_cnn


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
    ilc = IntermediateLayerClassifier(TwoViews(), layers=["a", "b"], cv=3).fit(X, y)
    scores = ilc.layer_scores_
    assert ilc.best_layer_ == max(scores, key=scores.get) == "a"
    assert ilc.selection_ == "cv"
    assert set(ilc.layer_score_std_) == {"a", "b"}
    shifted = IntermediateLayerClassifier(TwoViews(), layers=["a", "b"]).fit(
        X, y, X_val=X_val, y_val=y_val
    )
    assert shifted.best_layer_ == "b"
    assert shifted.selection_ == "validation"
    X_test, y_test = two_view_data(300, shifted=True, seed=2)
    assert shifted.score(X_test, y_test) > ilc.score(X_test, y_test) + 0.2


def test_layer_scores_are_cross_validation_of_the_head():
    X, y = two_view_data(120, shifted=False, seed=3)
    cv = StratifiedKFold(3)
    ilc = IntermediateLayerClassifier(TwoViews(), layers=["a", "b"], cv=cv).fit(X, y)
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


def test_clone_shares_the_model():
    net = TwoViews()
    assert clone(ILC(net)).model is net


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
    heads = {"logistic": default_probe(), "centroid": NearestCentroid()}
    cache = MemoryCache()
    test_sets = {"id": (X[60:], y[60:]), "shifted": (X_shift[60:], y[60:])}
    table = layer_sweep(net, X[:60], y[:60], heads=heads, cv=3, cache=cache,
                        test_sets=test_sets, cost_sample=0)
    # each distinct row once, all layers, all folds; one more row counts FLOPs
    assert counter.take() == 60 + 30 + 30 + 1
    layer_sweep(net, X[:60], y[:60], heads={"c": NearestCentroid()}, cv=2, cache=cache,
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


def test_layer_sweep_names_heads_given_as_a_list(images):
    X, y, _ = images
    table = layer_sweep(make_small_cnn(n_classes=3), X, y, layers=[0, -1],
                        heads=[NearestCentroid(), NearestCentroid()], cv=2)
    assert set(table["head"]) == {"NearestCentroid", "NearestCentroid_2"}
    assert set(table["split"]) == {"cv"}
