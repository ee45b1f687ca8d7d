"""layer_sweep with a control task (selectivity) and with learning curves."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

from sklearn_layers import (
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    layer_sweep,
)
from sklearn_layers._selection._control import (
    class_frequencies,
    control_labels,
    control_seed,
    input_identities,
)
from sklearn_layers._selection._intervals import fold_interval
from sklearn_layers.utils.toy import make_mlp

HEADS = {"1-NN": KNeighborsClassifier(n_neighbors=1), "centroid": NearestCentroid()}


def _repeated(n_distinct=60, copies=4, seed=0):
    """Each distinct input ``copies`` times; the label is the sign of column 0."""
    rng = np.random.RandomState(seed)
    distinct = rng.randn(n_distinct, 4).astype(np.float32)
    X = np.repeat(distinct, copies, axis=0)
    return X, (X[:, 0] > 0).astype(int), distinct, (distinct[:, 0] > 0).astype(int)


def test_a_memorising_head_scores_on_the_control_task_and_a_prototype_does_not():
    """Hewitt & Liang's case: inputs recur, so a 1-NN head recalls their control labels.

    The held-out rows are inputs seen in training: the 1-NN head scores 1 on
    the control task (its selectivity collapses), the class-mean head, which
    cannot remember an input, stays near chance.
    """
    X, y, X_test, y_test = _repeated()
    table = layer_sweep(make_mlp(4, hidden=(16,), n_outputs=2), X, y, estimators=list(HEADS.items()),
                        test_sets={"seen inputs": (X_test, y_test)}, control=True,
                        n_bootstrap=20, cost_sample=0)
    for row in table.itertuples():
        assert row.selectivity == pytest.approx(row.score - row.control_score)
        assert row.selectivity_low <= row.selectivity <= row.selectivity_high
        if row.head == "1-NN":
            assert row.control_score == 1.0
        else:
            assert row.control_score < 0.75
    knn = table[table["head"] == "1-NN"]["selectivity"]
    centroid = table[table["head"] == "centroid"]["selectivity"]
    assert (centroid.to_numpy() > knn.to_numpy()).all()


def test_control_scores_are_heads_fitted_on_the_control_labels():
    """Against a hand computation: the labels drawn per identity, the same fold rows."""
    X, y, X_test, y_test = _repeated(seed=1)
    net = make_mlp(4, hidden=(16,), n_outputs=2)
    table = layer_sweep(net, X, y, estimators=[("centroid", NearestCentroid())],
                        test_sets={"t": (X_test, y_test)}, cv=3, control=True,
                        n_bootstrap=0, cost_sample=0, random_state=5)
    # the seed layer_sweep derives from random_state=5
    which = control_seed(int(np.random.RandomState(5).randint(np.iinfo(np.int32).max)))
    classes, freq = class_frequencies(y)
    c = control_labels(input_identities(X), classes, freq, which)
    c_test = control_labels(input_identities(X_test), classes, freq, which)
    lft = LayerFeatureTransformer(net, layers="all", cache=None).fit(X)
    F, F_test = lft.transform(X), lft.transform(X_test)
    folds = list(StratifiedKFold(3).split(F, y))
    for layer, cols in lft.feature_slices_.items():
        rows = table[table["layer"] == layer].set_index("split")
        head = NearestCentroid()
        task = [clone(head).fit(F[a][:, cols], y[a]).score(F[b][:, cols], y[b]) for a, b in folds]
        ctrl = [clone(head).fit(F[a][:, cols], c[a]).score(F[b][:, cols], c[b]) for a, b in folds]
        assert rows.loc["cv", "control_score"] == pytest.approx(np.mean(ctrl), abs=1e-12)
        low, high = fold_interval(np.subtract(task, ctrl))
        assert_allclose([rows.loc["cv", "selectivity_low"], rows.loc["cv", "selectivity_high"]],
                        [low, high], atol=1e-12)
        expected = clone(head).fit(F[:, cols], c).score(F_test[:, cols], c_test)
        assert rows.loc["t", "control_score"] == pytest.approx(expected, abs=1e-12)


def test_control_must_be_a_bool():
    X, y, _, _ = _repeated()
    with pytest.raises(TypeError, match="control"):
        layer_sweep(make_mlp(4, hidden=(8,), n_outputs=2), X, y, control="yes", cost_sample=0)


def test_train_sizes_add_one_row_per_size_and_the_full_size_is_the_plain_sweep():
    X, y, X_test, y_test = _repeated(n_distinct=80, copies=1, seed=2)
    net = make_mlp(4, hidden=(16,), n_outputs=2)
    kw = dict(estimators=[("centroid", NearestCentroid())], test_sets={"t": (X_test, y_test)},
              n_bootstrap=0, cost_sample=0)
    curves = layer_sweep(net, X, y, train_sizes=[10, 40, 80], **kw)
    plain = layer_sweep(net, X, y, **kw)
    assert list(curves.columns[:5]) == ["layer", "layer_index", "head", "split", "train_size"]
    assert sorted(curves["train_size"].unique()) == [10, 40, 80]
    assert len(curves) == 3 * len(plain)
    full = curves[curves["train_size"] == 80].set_index("layer")["score"]
    assert_allclose(full.loc[plain["layer"]].to_numpy(), plain["score"].to_numpy(), atol=0)


def test_control_and_train_sizes_together_fit_the_same_subsets():
    X, y, X_test, y_test = _repeated(n_distinct=30, copies=4, seed=3)
    table = layer_sweep(make_mlp(4, hidden=(16,), n_outputs=2), X, y,
                        estimators=[("1-NN", KNeighborsClassifier(n_neighbors=1))],
                        test_sets={"seen": (X_test, y_test)}, control=True,
                        train_sizes=[0.5, 1.0], n_bootstrap=0, cost_sample=0)
    assert {"train_size", "control_score", "selectivity"} <= set(table.columns)
    # with every training row the memoriser recalls every seen input's control label
    assert (table[table["train_size"] == 120]["control_score"] == 1.0).all()


class _TwoColumns(torch.nn.Module):
    """Layer ``a`` is input column 0, layer ``b`` column 1 (then a head)."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(2, 1, bias=False)
        self.b = torch.nn.Linear(2, 1, bias=False)
        self.head = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[1.0, 0.0]]))
            self.b.weight.copy_(torch.tensor([[0.0, 1.0]]))

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def _property_or_identity(seed=0):
    """Column 0 holds the property (coarsely: 4 values, labels 10% noisy); column 1
    names the input (a unique code). Each input recurs three times, the copies
    apart, so that every fold of a (stratified) 3-fold split sees each input."""
    rng = np.random.RandomState(seed)
    q = rng.choice([-2.0, -1.0, 1.0, 2.0], size=60)
    label = (q > 0).astype(int)
    flip = rng.permutation(60)[:6]
    label[flip] = 1 - label[flip]
    distinct = np.c_[q, np.arange(60) * 10.0].astype(np.float32)
    return np.tile(distinct, (3, 1)), np.tile(label, 3), distinct, label


@pytest.mark.parametrize("where", ["validation", "cv"])
def test_ilc_with_control_chooses_the_layer_holding_the_property(where):
    """A 1-NN head scores best on the identity layer by memorising; selectivity sees it."""
    X, y, X_val, y_val = _property_or_identity()
    kw = dict(layers=["a", "b"], estimator=KNeighborsClassifier(n_neighbors=1), cv=3,
              random_state=0)
    fit = {"X_val": X_val, "y_val": y_val} if where == "validation" else {}
    plain = IntermediateLayerClassifier(_TwoColumns(), **kw).fit(X, y, **fit)
    assert plain.best_layer_ == "b"
    assert not hasattr(plain, "layer_control_scores_")
    selective = IntermediateLayerClassifier(_TwoColumns(), control=True, **kw).fit(X, y, **fit)
    assert selective.best_layer_ == "a"
    assert selective.layer_control_scores_["b"] == 1.0
    assert selective.layer_control_scores_["a"] < 0.75
    for layer in ("a", "b"):
        assert selective.layer_scores_[layer] == pytest.approx(
            plain.layer_scores_[layer] - selective.layer_control_scores_[layer])


def test_ilc_control_refuses_a_layer_metric():
    X, y, _, _ = _property_or_identity()
    ilc = IntermediateLayerClassifier(_TwoColumns(), layers=["a", "b"], control=True,
                                      scoring="effective_rank")
    with pytest.raises(ValueError, match="layer metric"):
        ilc.fit(X, y)


def test_repeated_train_sizes_warn_once():
    X, y, X_test, y_test = _repeated(n_distinct=40, copies=1, seed=4)
    with pytest.warns(RuntimeWarning, match="repeats") as record:
        layer_sweep(make_mlp(4, hidden=(8,), n_outputs=2), X, y,
                    estimators=[("centroid", NearestCentroid())], test_sets={"t": (X_test, y_test)},
                    train_sizes=[0.5, 0.51], n_bootstrap=0, cost_sample=0)
    assert sum("repeats" in str(w.message) for w in record) == 1


def test_control_with_items_and_a_lambda_preprocess():
    X, y, X_test, y_test = _repeated(n_distinct=30, copies=3, seed=5)
    lft = LayerFeatureTransformer(make_mlp(4, hidden=(8,), n_outputs=2),
                                  preprocess=lambda rows: torch.from_numpy(np.stack(rows)))
    table = layer_sweep(lft, list(X), y,
                        estimators=[("1-NN", KNeighborsClassifier(n_neighbors=1))],
                        test_sets={"seen": (list(X_test), y_test)}, control=True,
                        n_bootstrap=0, cost_sample=0)
    assert (table["control_score"] == 1.0).all()


def test_control_needs_classes():
    from sklearn.linear_model import Ridge

    from sklearn_layers._selection._probing import sweep_rows
    from sklearn_layers._selection._scoring import Splits

    F = np.random.RandomState(0).randn(20, 3)
    with pytest.raises(ValueError, match="continuous"):
        sweep_rows(F, {"a": slice(0, 3)}, F[:, 0], {"ridge": Ridge()}, {"ridge": None},
                   Splits(tests={"t": (F, F[:, 0])}), identities=([b""] * 20, {"t": [b""] * 20}))
