import re
from contextlib import nullcontext

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_blobs
from sklearn.metrics.pairwise import cosine_similarity, euclidean_distances
from sklearn.model_selection import train_test_split
from sklearn.neighbors import NearestCentroid
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_layers.heads.neighbours._prototype import PrototypeClassifier

from _float32 import cosine_error, euclidean_error, gamma


@parametrize_with_checks(
    [
        PrototypeClassifier(),
        PrototypeClassifier(metric="euclidean", temperature=0.5),
        PrototypeClassifier(shrinkage=0.2, calibration="teen"),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _datasets():
    rng = np.random.default_rng(0)
    X_rand = rng.normal(size=(400, 12))
    y_rand = rng.integers(0, 5, size=400)
    X_blob, y_blob = make_blobs(600, n_features=30, centers=8, random_state=1)
    return {
        "iris": load_iris(return_X_y=True),
        "digits": load_digits(return_X_y=True),
        "random": (X_rand, y_rand),
        "blobs-float32": (X_blob.astype(np.float32), y_blob),
    }


@pytest.mark.parametrize("name", list(_datasets()))
def test_euclidean_predict_equals_nearest_centroid(name):
    X, y = _datasets()[name]
    X_train, X_test, y_train, _ = train_test_split(X, y, random_state=0)
    ours = PrototypeClassifier(metric="euclidean").fit(X_train, y_train)
    with pytest.warns(UserWarning) if name == "digits" else nullcontext():
        ref = NearestCentroid().fit(X_train, y_train)
    for data in (X_train, X_test):
        np.testing.assert_array_equal(ours.predict(data), ref.predict(data))
    if X.dtype == np.float64:  # same summation: bit-for-bit the same centroids
        np.testing.assert_array_equal(ours.prototypes_, ref.centroids_)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_decision_and_proba_by_hand(metric):
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier(metric=metric, temperature=0.3).fit(X, y)
    means = np.stack([X[y == c].mean(axis=0) for c in range(3)])
    # means of 50 positive values, summed in two orders: gamma(51) each
    np.testing.assert_allclose(clf.prototypes_, means, rtol=2 * gamma(51, np.float64))
    if metric == "cosine":
        expected = cosine_similarity(X, means)
        delta = 2 * cosine_error(X.shape[1])
    else:
        expected = -euclidean_distances(X, means)
        delta = 2 * euclidean_error(X, means, expected)
    scores = clf.decision_function(X)
    assert (np.abs(scores - expected) <= delta).all()
    # softmax(s / T): each probability moves by at most 2 max|ds| / T relative,
    # its log by that much absolutely; plus each side's exp, sum and division
    reference = _softmax(expected / 0.3)
    rtol = 2 * np.max(delta) / 0.3 + gamma(16, np.float64)
    assert (np.abs(clf.predict_proba(X) - reference) <= rtol * reference).all()
    log_reference = np.log(reference)
    atol = rtol + gamma(16, np.float64) * np.abs(log_reference).max()
    np.testing.assert_allclose(
        clf.predict_log_proba(X), log_reference, rtol=0, atol=atol
    )
    np.testing.assert_array_equal(clf.predict(X), np.argmax(scores, axis=1))


def test_temperature_changes_proba_not_predictions():
    X, y = load_iris(return_X_y=True)
    soft = PrototypeClassifier(temperature=1.0).fit(X, y)
    sharp = PrototypeClassifier(temperature=0.01).fit(X, y)
    np.testing.assert_array_equal(soft.predict(X), sharp.predict(X))
    assert sharp.predict_proba(X).max(axis=1).mean() > soft.predict_proba(X).max(
        axis=1
    ).mean()


def test_log_proba_is_finite_where_proba_underflows():
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier(metric="euclidean", temperature=1e-3).fit(X, y)
    assert (clf.predict_proba(X) == 0).any()
    assert np.isfinite(clf.predict_log_proba(X)).all()


def test_binary_decision_function_is_score_difference():
    X, y = make_blobs(100, centers=2, random_state=0)
    clf = PrototypeClassifier().fit(X, y)
    expected = cosine_similarity(X, clf.prototypes_)
    # two cosines within cosine_error each side, and one subtraction
    atol = 4 * cosine_error(X.shape[1]) + 2 * gamma(2, np.float64)
    np.testing.assert_allclose(
        clf.decision_function(X), expected[:, 1] - expected[:, 0], rtol=0, atol=atol
    )
    np.testing.assert_array_equal(clf.predict(X), (clf.decision_function(X) > 0) * 1)


def test_shrinkage_pulls_toward_global_mean():
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier(shrinkage=0.25).fit(X, y)
    means = np.stack([X[y == c].mean(axis=0) for c in range(3)])
    # positive data: means of n values within gamma(n + 1) relative, each side;
    # the shrunk prototypes add two products and a sum
    rtol = 2 * gamma(len(X) + 4, np.float64)
    np.testing.assert_allclose(clf.global_mean_, X.mean(axis=0), rtol=rtol)
    np.testing.assert_allclose(
        clf.prototypes_, 0.75 * means + 0.25 * X.mean(axis=0), rtol=rtol
    )
    np.testing.assert_allclose(clf.class_means_, means, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_partial_fit_running_means_equal_fit_on_concatenation(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(3.0, 2.0, size=(500, 7)).astype(dtype)
    y = rng.integers(0, 4, size=500)
    full = PrototypeClassifier(metric="euclidean").fit(X, y)
    inc = PrototypeClassifier(metric="euclidean")
    for batch in np.array_split(np.arange(500), [10, 60, 61, 300]):
        inc.partial_fit(X[batch], y[batch])
    np.testing.assert_array_equal(inc.classes_, full.classes_)
    np.testing.assert_array_equal(inc.class_count_, full.class_count_)
    # running means (a few roundings per update) vs one sum of at most 500
    # terms: each within gamma(500 + 4 * batches) max|x| of the exact mean
    atol = 2 * gamma(500 + 4 * 5, np.float64) * np.abs(X).max()
    np.testing.assert_allclose(inc.class_means_, full.class_means_, rtol=0, atol=atol)
    np.testing.assert_allclose(inc.global_mean_, full.global_mean_, rtol=0, atol=atol)
    np.testing.assert_array_equal(inc.predict(X), full.predict(X))


def test_fit_forgets_partial_fit_state():
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier().partial_fit(X[:10] + 100, np.full(10, 7))
    clf.fit(X, y)
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_array_equal(clf.class_count_, [50, 50, 50])
    assert clf.base_class_mask_.all()


def test_class_incremental_partial_fit_adds_and_sorts_classes():
    X, y = make_blobs(300, centers=4, n_features=5, random_state=0, cluster_std=0.5)
    labels = np.array(["b", "d", "a", "c"])[y]
    base = np.isin(labels, ["b", "d"])
    clf = PrototypeClassifier(metric="euclidean").fit(X[base], labels[base])
    np.testing.assert_array_equal(clf.classes_, ["b", "d"])
    clf.partial_fit(X[labels == "a"][:5], labels[labels == "a"][:5])
    clf.partial_fit(X[labels == "c"][:5], labels[labels == "c"][:5])
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c", "d"])
    np.testing.assert_array_equal(clf.base_class_mask_, [False, True, False, True])
    np.testing.assert_array_equal(clf.class_count_, [5, (labels == "b").sum(), 5, 75])
    # probabilities follow the new order of classes_
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    assert (clf.predict(X) == labels).mean() > 0.95
    # the same means as fitting everything at once on those samples
    used = base.copy()
    used[np.flatnonzero(labels == "a")[:5]] = True
    used[np.flatnonzero(labels == "c")[:5]] = True
    ref = PrototypeClassifier(metric="euclidean").fit(X[used], labels[used])
    # running vs one-shot means, as in the partial_fit test above
    atol = 2 * gamma(len(X) + 4 * 3, np.float64) * np.abs(X).max()
    np.testing.assert_allclose(clf.class_means_, ref.class_means_, rtol=0, atol=atol)


def test_announced_classes_without_samples_are_never_predicted():
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier().partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.class_count_[2] == 0 and np.isnan(clf.prototypes_[2]).all()
    assert not np.isin(2, clf.predict(X))
    assert (clf.predict_proba(X)[:, 2] == 0).all()
    assert np.isneginf(clf.decision_function(X)[:, 2]).all()
    clf.partial_fit(X[y == 2], y[y == 2])
    assert not clf.base_class_mask_[2]
    assert (clf.predict(X) == y).mean() > 0.9


def test_partial_fit_refuses_mixed_label_types():
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier().fit(X, y)
    with pytest.raises(ValueError, match="another type"):
        clf.partial_fit(X[:3], ["a", "a", "a"])
    with pytest.raises(ValueError, match="another type"):
        PrototypeClassifier().partial_fit(X[:3], [0, 1, 1], classes=["a", "b"])


def test_partial_fit_wrong_feature_count():
    X, y = load_iris(return_X_y=True)
    clf = PrototypeClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        clf.partial_fit(X[:, :3], y)


def test_default_calibration_temperature_is_teens_scale_16():
    # TEEN writes softmax(tau * cos) with tau = 16: a temperature of 1 / 16
    rng = np.random.default_rng(1)
    X_base, y_base = rng.random((40, 5)), np.repeat([0, 1], 20)
    X_new, y_new = rng.random((4, 5)) + 0.3, np.array([2, 2, 2, 2])
    clf = PrototypeClassifier(calibration="teen").fit(X_base, y_base)
    clf.partial_fit(X_new, y_new)
    B = np.stack([X_base[y_base == c].mean(axis=0) for c in range(2)])
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    p = X_new.mean(axis=0)
    pn = p / np.linalg.norm(p)
    w = _softmax(16.0 * (pn @ Bn.T)[None, :])
    delta = w @ Bn
    delta /= np.linalg.norm(delta)
    expected = 0.5 * pn + 0.5 * delta[0]
    np.testing.assert_allclose(clf.prototypes_[2], expected, rtol=1e-12)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_teen_calibration_matches_hand_computation(metric):
    rng = np.random.default_rng(0)
    X_base = rng.random((60, 6))
    y_base = np.repeat([0, 1, 2], 20)
    X_new = rng.random((6, 6)) + 0.5
    y_new = np.repeat([3, 4], 3)
    alpha, temperature = 0.3, 0.2
    clf = PrototypeClassifier(
        metric=metric,
        calibration="teen",
        calibration_weight=alpha,
        calibration_temperature=temperature,
    )
    clf.fit(X_base, y_base).partial_fit(X_new, y_new)

    B = np.stack([X_base[y_base == c].mean(axis=0) for c in range(3)])
    P = np.stack([X_new[y_new == c].mean(axis=0) for c in (3, 4)])
    Bn = B / np.linalg.norm(B, axis=1, keepdims=True)
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    w = _softmax(Pn @ Bn.T / temperature)
    if metric == "cosine":
        delta = w @ Bn
        delta /= np.linalg.norm(delta, axis=1, keepdims=True)
        expected = (1 - alpha) * Pn + alpha * delta
    else:
        expected = (1 - alpha) * P + alpha * (w @ B)
    # positive data, so relative bounds hold: cosines within cosine_error(6)
    # each side, moving the weights softmax(s / temperature) by 2 / temperature
    # of that; means, norms and weighted sums of a few terms add gamma(40)
    rtol = 4 / temperature * cosine_error(6) + gamma(40, np.float64)
    np.testing.assert_allclose(clf.prototypes_[3:], expected, rtol=rtol)
    base_rtol = 2 * gamma(21, np.float64)  # means of 20 values, two orders
    np.testing.assert_allclose(clf.prototypes_[:3], B, rtol=base_rtol)  # untouched
    np.testing.assert_allclose(clf.class_means_[3:], P, rtol=base_rtol)
    np.testing.assert_array_equal(clf.base_class_mask_, [1, 1, 1, 0, 0])

    # without new classes calibration changes nothing
    plain = PrototypeClassifier(metric=metric).fit(X_base, y_base)
    teen = clone(clf).fit(X_base, y_base)
    np.testing.assert_array_equal(teen.prototypes_, plain.prototypes_)


def test_teen_few_shot_digits_improves_new_class_accuracy():
    """Digits 0-6 fully trained, 7-9 added with 5 shots each (20 draws).

    TEEN (Wang et al., NeurIPS 2023) reports that calibrating new prototypes
    toward the base prototypes raises new-class accuracy at a small cost on
    the base classes. That holds on digits with the default parameters.
    """
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=0.5, stratify=y, random_state=0
    )
    base, new_te = y_tr < 7, y_te >= 7
    acc = {None: [], "teen": []}
    base_acc = {None: [], "teen": []}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        shots = np.concatenate(
            [rng.choice(np.flatnonzero(y_tr == c), 5, replace=False) for c in (7, 8, 9)]
        )
        for calibration in acc:
            clf = PrototypeClassifier(calibration=calibration)
            clf.fit(X_tr[base], y_tr[base]).partial_fit(X_tr[shots], y_tr[shots])
            pred = clf.predict(X_te)
            acc[calibration].append(np.mean(pred[new_te] == y_te[new_te]))
            base_acc[calibration].append(np.mean(pred[~new_te] == y_te[~new_te]))
    without, with_ = np.mean(acc[None]), np.mean(acc["teen"])
    print(
        f"\ndigits 7-9 5-shot new-class accuracy: without calibration {without:.4f}, "
        f"with TEEN {with_:.4f}; base-class accuracy {np.mean(base_acc[None]):.4f}"
        f" -> {np.mean(base_acc['teen']):.4f}"
    )
    assert with_ > without + 0.01
    assert np.mean(np.array(acc["teen"]) >= np.array(acc[None])) >= 0.7


def test_string_labels_and_pandas_input():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = pd.Series(np.array(["setosa", "versicolor", "virginica"])[y])
    clf = PrototypeClassifier().fit(X, names)
    np.testing.assert_array_equal(clf.feature_names_in_, X.columns)
    assert set(clf.predict(X)) <= set(clf.classes_)
    np.testing.assert_array_equal(
        clf.predict(X),
        PrototypeClassifier().fit(X.to_numpy(), names).predict(X.to_numpy()),
    )
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X.to_numpy())


def test_deterministic():
    X, y = load_digits(return_X_y=True)
    a = PrototypeClassifier(calibration="teen").fit(X[y < 7], y[y < 7])
    b = clone(a).fit(X[y < 7], y[y < 7])
    a.partial_fit(X[y >= 7][:15], y[y >= 7][:15])
    b.partial_fit(X[y >= 7][:15], y[y >= 7][:15])
    np.testing.assert_array_equal(a.prototypes_, b.prototypes_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


# ----------------------------------------------------------------- properties


@st.composite
def _problems(draw):
    n_classes = draw(st.integers(2, 5))
    n_samples = draw(st.integers(n_classes, 40))
    n_features = draw(st.integers(1, 8))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
    X = rng.normal(scale=scale, size=(n_samples, n_features))
    y = np.concatenate(
        [np.arange(n_classes), rng.integers(0, n_classes, n_samples - n_classes)]
    )
    return X.astype(dtype), y


@settings(max_examples=40, deadline=None)
@given(problem=_problems(), metric=st.sampled_from(["cosine", "euclidean"]))
def test_shapes_and_dtypes(problem, metric):
    X, y = problem
    clf = PrototypeClassifier(metric=metric, shrinkage=0.1).fit(X, y)
    n, n_classes = X.shape[0], len(np.unique(y))
    proba = clf.predict_proba(X)
    assert proba.shape == (n, n_classes) and proba.dtype == np.float64
    # e_i / sum(e): the sum within gamma(k), each division u, their sum gamma(k)
    np.testing.assert_allclose(
        proba.sum(axis=1), 1.0, rtol=0, atol=gamma(2 * n_classes + 2, np.float64)
    )
    assert np.isfinite(clf.predict_log_proba(X)).all()
    decision = clf.decision_function(X)
    assert decision.shape == ((n,) if n_classes == 2 else (n, n_classes))
    pred = clf.predict(X)
    assert pred.shape == (n,) and np.isin(pred, clf.classes_).all()
    assert clf.prototypes_.shape == (n_classes, X.shape[1])


@settings(max_examples=25, deadline=None)
@given(
    problem=_problems(),
    bad=st.sampled_from(["nan", "inf", "one class", "features", "empty"]),
)
def test_bad_input_raises_clear_value_error(problem, bad):
    X, y = problem
    clf = PrototypeClassifier()
    if bad == "one class":
        with pytest.raises(ValueError, match="at least 2 classes.*got 1 class"):
            clf.fit(X, np.zeros_like(y))
        return
    if bad == "empty":
        with pytest.raises(ValueError, match="0 sample"):
            clf.fit(X[:0], y[:0])
        return
    clf.fit(X, y)
    X_bad = X.astype(np.float64)
    if bad == "features":
        X_bad = np.hstack([X_bad, X_bad])
        message = f"X has {2 * X.shape[1]} features.*expecting {X.shape[1]}"
    else:
        X_bad[0, 0] = np.nan if bad == "nan" else np.inf
        what = "NaN" if bad == "nan" else "infinity"
        message = re.escape(f"Input X contains {what}")
    for method in (clf.predict, clf.predict_proba, clf.decision_function):
        with pytest.raises(ValueError, match=message):
            method(X_bad)
    with pytest.raises(ValueError, match=message):
        clf.partial_fit(X_bad, y)
