"""RFRBoost: the closed-form steps against direct solutions, staging, early stopping, input."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, make_classification, make_regression
from sklearn.utils.class_weight import compute_sample_weight

from sklearn_layers import (
    GrowNetClassifier,
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    RFRBoostClassifier,
    RFRBoostRegressor,
    layer_sweep,
)
from sklearn_layers.heads.boosting import _rfr_core as core
from sklearn_layers.utils.toy import make_mlp

FAST = {"max_iter": 3, "early_stopping": False, "random_state": 0, "n_threads": 1}


# ------------------------------------------------------------ closed forms


@pytest.mark.parametrize("alpha", [0.0, 1e-3, 0.5])
def test_ridge_solve_is_the_direct_least_squares_solution(alpha):
    rng = np.random.default_rng(0)
    F, G = rng.normal(size=(50, 8)), rng.normal(size=(50, 3))
    w = rng.uniform(0.1, 3.0, 50)
    B = core.ridge_solve(F, G, w, alpha)
    # sum_i share_i ||G_i - F_i B||^2 + alpha ||B||^2 as one stacked lstsq
    root = np.sqrt(w / w.sum())[:, None]
    A = np.vstack([root * F, np.sqrt(alpha) * np.eye(8)])
    b = np.vstack([root * G, np.zeros((8, 3))])
    expected = np.linalg.lstsq(A, b, rcond=None)[0]
    np.testing.assert_allclose(B, expected, rtol=1e-9, atol=1e-12)


def test_gcv_picks_the_penalty_of_the_direct_gcv_formula():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(40, 12))
    G = F[:, :2] @ rng.normal(size=(2, 2)) + rng.normal(0, 2.0, size=(40, 2))
    w = rng.uniform(0.5, 2.0, 40)
    B, alpha = core.ridge_solve_gcv(F, G, w)
    share = w / w.sum()

    def gcv(a):
        # hat matrix of the weighted ridge: rows scaled by sqrt(share)
        root = np.sqrt(share)[:, None]
        Fs = root * F
        H = Fs @ np.linalg.solve(Fs.T @ Fs + a * np.eye(12), Fs.T)
        residual = root * G - H @ (root * G)
        return (residual**2).sum() / (1 - np.trace(H) / len(F)) ** 2

    values = [gcv(a) for a in core.AUTO_ALPHAS]
    assert alpha == core.AUTO_ALPHAS[int(np.argmin(values))]
    np.testing.assert_allclose(B, core.ridge_solve(F, G, w, alpha), rtol=1e-8, atol=1e-12)


def _top(rng, d, k):
    return core.LinearTop(rng.normal(size=(d, k)), rng.normal(size=k))


def test_squared_line_search_minimises_the_loss_along_the_direction():
    rng = np.random.default_rng(2)
    Phi, Y, D = rng.normal(size=(30, 4)), rng.normal(size=(30, 1)), rng.normal(size=(30, 4))
    w = rng.uniform(0.5, 2.0, 30)
    top = _top(rng, 4, 1)
    a = core.line_search_squared(Phi, Y, w, top, D)

    def objective(b):
        r = Y - top(Phi + b * D)
        return (w / w.sum()) @ (r * r).sum(axis=1) / 2 + core._LINE_SEARCH_L2 * b * b / 2

    # a quadratic in b: its minimiser by numpy's polynomial fit of three points
    coefficients = np.polyfit([-1.0, 0.0, 1.0], [objective(b) for b in (-1.0, 0.0, 1.0)], 2)
    np.testing.assert_allclose(a, -coefficients[1] / (2 * coefficients[0]), rtol=1e-9)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_line_search_is_a_stationary_point(n_classes):
    rng = np.random.default_rng(3)
    k = 1 if n_classes == 2 else n_classes
    Phi, D = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    codes = rng.integers(0, n_classes, 60)
    Y = codes[:, None].astype(float) if k == 1 else np.eye(n_classes)[codes]
    w = rng.uniform(0.5, 2.0, 60)
    top = _top(rng, 4, k)
    a = core.line_search_logistic(Phi, Y, w, top, D)

    def objective(b):
        return core.logistic_loss(top(Phi + b * D), Y, w) + core._LINE_SEARCH_L2 * b * b

    h = 1e-5
    slope = (objective(a + h) - objective(a - h)) / (2 * h)
    assert abs(slope) < 1e-6
    assert objective(a) <= objective(0.0)


def test_logistic_top_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(200, 6, random_state=0)
    alpha = 0.01
    top = core.fit_logistic_top(X, y[:, None].astype(float), np.ones(200), alpha, max_iter=500)
    # sklearn minimises C * sum(loss) + ||w||^2 / 2, ours mean(loss) + alpha ||w||^2 / 2
    reference = LogisticRegression(C=1 / (alpha * 200), tol=1e-10, max_iter=1000).fit(X, y)
    np.testing.assert_allclose(top.coef[:, 0], reference.coef_[0], rtol=1e-3, atol=1e-4)


# ------------------------------------------------------------ estimators


def test_staged_predict_equals_shorter_fits():
    X, y = load_diabetes(return_X_y=True)
    reg = RFRBoostRegressor(**FAST).fit(X, y)
    staged = list(reg.staged_predict(X))
    assert len(staged) == reg.n_iter_ == 3
    np.testing.assert_array_equal(staged[-1], reg.predict(X))
    for t in (1, 2):
        shorter = RFRBoostRegressor(**{**FAST, "max_iter": t}).fit(X, y)
        np.testing.assert_allclose(staged[t - 1], shorter.predict(X), rtol=1e-5)
    assert not np.allclose(staged[0], staged[-1])  # the stages move the prediction


def test_staged_predict_proba_ends_at_predict_proba():
    X, y = make_classification(150, 5, n_informative=3, n_classes=3, random_state=0)
    clf = RFRBoostClassifier(**FAST).fit(X, y)
    staged = list(clf.staged_predict_proba(X))
    assert len(staged) == clf.n_iter_
    np.testing.assert_array_equal(staged[-1], clf.predict_proba(X))
    np.testing.assert_array_equal(list(clf.staged_predict(X))[-1], clf.predict(X))


def test_stages_lower_the_training_loss():
    X, y = make_regression(300, 5, noise=1.0, random_state=0)
    y = np.sin(y / 50)
    reg = RFRBoostRegressor(max_iter=6, early_stopping=True, validation_fraction=0.2,
                            n_iter_no_change=6, random_state=0, n_threads=1).fit(X, y)
    assert np.all(np.diff(reg.train_score_) >= -1e-6)  # scores are negative losses
    assert reg.train_score_[-1] > reg.train_score_[0]


def test_early_stopping_cuts_back_to_the_best_validation_stage():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 10)), rng.normal(size=200)  # noise: stages overfit
    reg = RFRBoostRegressor(max_iter=30, l2_regularization=1e-6, early_stopping=True,
                            n_iter_no_change=2, random_state=0, n_threads=1).fit(X, y)
    assert reg.do_early_stopping_
    n_trained = len(reg.validation_score_) - 1
    assert n_trained < 30
    assert reg.n_iter_ == 1 + int(np.argmax(reg.validation_score_[1:]))
    assert len(list(reg.staged_predict(X))) == reg.n_iter_
    auto = RFRBoostRegressor(max_iter=2, random_state=0, n_threads=1).fit(X, y)
    assert not auto.do_early_stopping_ and auto.n_iter_ == 2  # 'auto': off below 10,000 rows


@pytest.mark.parametrize("n_rows, width", [(36, 16), (400, 40), (2000, 64)])
def test_auto_widths_grow_with_the_square_root_of_the_rows(n_rows, width):
    X, y = make_regression(n_rows, 3, random_state=0)
    reg = RFRBoostRegressor(**{**FAST, "max_iter": 1}).fit(X, y)
    assert (reg.representation_width_, reg.n_features_per_stage_) == (width, 2 * width)
    assert reg._stages[0].delta.shape == (2 * width, width)
    fixed = RFRBoostRegressor(**{**FAST, "max_iter": 1}, representation_width=8,
                              n_features_per_stage=5).fit(X, y)
    assert fixed._stages[0].delta.shape == (5, 8)


def test_deterministic_and_pickles():
    X, y = make_classification(120, 6, random_state=1)
    a = RFRBoostClassifier(**FAST).fit(X, y)
    b = RFRBoostClassifier(**FAST).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = RFRBoostClassifier(**{**FAST, "random_state": 1}).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    restored = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(restored.predict_proba(X), a.predict_proba(X))


def test_integer_sample_weight_equals_repeated_rows():
    # With a fixed penalty and widths: GCV and the 'auto' widths count rows, so
    # a repeated row and a weight of 2 may choose differently.
    X, y = make_regression(80, 4, noise=5.0, random_state=0)
    weights = np.arange(80) % 3
    params = {**FAST, "l2_regularization": 1e-2, "representation_width": 16,
              "n_features_per_stage": 32}
    weighted = RFRBoostRegressor(**params).fit(X, y, sample_weight=weights)
    repeated = RFRBoostRegressor(**params).fit(np.repeat(X, weights, axis=0),
                                               np.repeat(y, weights))
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-3,
                               atol=1e-3 * np.std(y))


def test_class_weight_is_a_sample_weight():
    X, y = make_classification(150, 5, weights=[0.8], random_state=0)
    balanced = RFRBoostClassifier(**FAST, class_weight="balanced").fit(X, y)
    weighted = RFRBoostClassifier(**FAST).fit(
        X, y, sample_weight=compute_sample_weight("balanced", y)
    )
    np.testing.assert_allclose(balanced.predict_proba(X), weighted.predict_proba(X),
                               rtol=1e-6, atol=1e-6)


def test_string_labels_and_one_class():
    X, y = make_classification(60, 4, random_state=0)
    labels = np.array(["no", "yes"])[y]
    clf = RFRBoostClassifier(**FAST).fit(X, labels)
    assert set(clf.predict(X)) <= {"no", "yes"}
    with pytest.raises(ValueError, match="at least 2 classes"):
        RFRBoostClassifier(**FAST).fit(X, np.zeros(60))


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 120
    size = rng.normal(size=n)
    size[::7] = np.nan
    colour = pd.Categorical(rng.choice(["red", "green", "blue", None], n))
    X = pd.DataFrame({"size": size, "colour": colour, "count": rng.integers(0, 5, n)})
    y = ((np.nan_to_num(size) > 0) ^ (colour == "red")).astype(int)
    return X, y


def test_categorical_and_missing_read_as_grownet_reads_them(frame):
    X, y = frame
    rfr = RFRBoostClassifier(**FAST).fit(X, y)
    grownet = GrowNetClassifier(max_iter=1, early_stopping=False, random_state=0).fit(X, y)
    np.testing.assert_array_equal(rfr.is_categorical_, grownet.is_categorical_)
    np.testing.assert_array_equal(rfr._encode(X), grownet._encode(X))
    assert rfr.score(X, y) > 0.8  # the interaction of a category and a number
    # names, indices and masks name the same column
    for spec in (["colour"], [1], [False, True, False]):
        other = RFRBoostClassifier(**FAST, categorical_features=spec).fit(X, y)
        np.testing.assert_array_equal(other.predict_proba(X), rfr.predict_proba(X))


def test_unmarked_string_column_is_refused_by_name(frame):
    X, y = frame
    X = X.assign(colour=X["colour"].astype(str))
    with pytest.raises(ValueError, match=r"columns \['colour'\] as numbers"):
        RFRBoostClassifier(**FAST).fit(X, y)


# ------------------------------------------------------------ as a head


def _layer_data():
    X, y = make_classification(120, 6, n_informative=4, random_state=0)
    return X.astype(np.float32), y


def test_head_in_layer_sweep_and_ilc():
    X, y = _layer_data()
    net = make_mlp(6, hidden=(16, 8), n_outputs=2)
    extractor = LayerFeatureTransformer(net, cache=None)
    table = layer_sweep(extractor, X, y, estimators=[("rfr", RFRBoostClassifier(**FAST))],
                        cv=2, cost_sample=0)
    assert set(table["head"]) == {"rfr"}
    assert table["score"].between(0, 1).all()
    ilc = IntermediateLayerClassifier(extractor, estimator=RFRBoostClassifier(**FAST), cv=2)
    ilc.fit(X, y)
    assert ilc.score(X, y) > 0.7
