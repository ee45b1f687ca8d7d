import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_layers.heads import LinearProbeClassifier, default_probe
from sklearn_layers.heads.neighbours._knn import KNNInterpolatedClassifier

from _float32 import cosine_error, euclidean_error, gamma


@parametrize_with_checks(
    [
        KNNInterpolatedClassifier(),
        KNNInterpolatedClassifier(
            knn_weight=1.0, metric="euclidean", normalize=None, working_memory=0.001
        ),
        KNNInterpolatedClassifier(
            GaussianNB(), knn_weight=0.3, normalize="l2", n_neighbors=3
        ),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _similarity_error(clf, X_train, X_query, distances):
    """Bound on |s - s'| of two float64 computations of the kNN similarities."""
    d = X_train.shape[1]
    if clf.metric == "cosine":
        return np.full(distances.shape, 2 * cosine_error(d))
    if clf.normalize is not None:  # unit rows, each entry off by gamma(d + 3)
        def unit(a):
            return a / np.linalg.norm(a, axis=1, keepdims=True)

        Q, T = unit(X_query), unit(X_train)
        return 2 * euclidean_error(Q, T, distances) + 4 * gamma(d + 3, np.float64)
    # raw: the estimator expands around its centre, the reference sums directly
    c = clf.center_
    return euclidean_error(X_query - c, X_train - c, distances) + euclidean_error(
        X_query, X_train, distances
    )


def _hand_knn_proba(X_train, y_train, X_query, k, temperature, metric, normalize):
    """Similarity-weighted kNN written out the slow, obvious way."""
    classes = np.unique(y_train)
    center = X_train.mean(axis=0) if normalize == "center_l2" else 0.0
    A, Q = X_train - center, X_query - center
    if normalize is not None or metric == "cosine":
        A = A / np.linalg.norm(A, axis=1, keepdims=True)
        Q = Q / np.linalg.norm(Q, axis=1, keepdims=True)
    if metric == "cosine":
        sims = Q @ A.T
    else:
        sims = -np.sqrt(((Q[:, None, :] - A[None, :, :]) ** 2).sum(axis=2))
    proba = np.zeros((len(Q), len(classes)))
    for i, row in enumerate(sims):
        top = np.argsort(-row, kind="stable")[:k]
        for j in top:
            column = np.searchsorted(classes, y_train[j])
            proba[i, column] += np.exp(row[j] / temperature)
    return proba / proba.sum(axis=1, keepdims=True), sims


@pytest.fixture
def digits_split():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=300, train_size=900, random_state=0)


@pytest.mark.parametrize(
    "metric, normalize",
    [
        ("cosine", "center_l2"),
        ("cosine", None),
        ("euclidean", "l2"),
        ("euclidean", None),
    ],
)
def test_knn_weight_one_is_hand_written_weighted_knn(digits_split, metric, normalize):
    X_tr, X_te, y_tr, _ = digits_split
    if normalize is not None or metric == "cosine":
        # no all-zero row: the angle of a zero vector is undefined. Integer
        # pixels are kept for the raw Euclidean case, where many distances tie
        # exactly and both sides must break ties by the lower index.
        X_tr, X_te = X_tr + 0.1, X_te + 0.1
    temperature = 0.07 if metric == "cosine" else 2.0
    clf = KNNInterpolatedClassifier(
        knn_weight=1.0,
        n_neighbors=10,
        temperature=temperature,
        metric=metric,
        normalize=normalize,
    ).fit(X_tr, y_tr)
    assert clf.estimator_ is None
    expected, sims = _hand_knn_proba(
        X_tr, y_tr, X_te, 10, temperature, metric, normalize
    )
    dist, ind = clf.kneighbors(X_te)
    np.testing.assert_array_equal(ind, np.argsort(-sims, axis=1, kind="stable")[:, :10])
    # both sides in float64, in other orders: similarities within delta
    delta = _similarity_error(clf, X_tr, X_te, dist)
    top = np.take_along_axis(sims, ind, axis=1)
    if metric == "cosine":
        assert (np.abs(dist - (1 - top)) <= delta + 2 * gamma(1, np.float64)).all()
    else:
        assert (np.abs(dist - -top) <= delta).all()
    # exp(s / T) moves by delta / T relative; a ratio of two sums of those
    # twice that, plus each side's own roundings (exp, division, k-term sums)
    rtol = 2 * delta.max(axis=1, keepdims=True) / temperature + gamma(36, np.float64)
    assert (np.abs(clf.predict_proba(X_te) - expected) <= rtol * expected).all()


@pytest.mark.parametrize(
    "estimator",
    [None, GaussianNB(), make_pipeline(StandardScaler(), LogisticRegression(C=0.1))],
)
def test_knn_weight_zero_is_the_estimator(digits_split, estimator):
    X_tr, X_te, y_tr, _ = digits_split
    clf = KNNInterpolatedClassifier(estimator, knn_weight=0.0).fit(X_tr, y_tr)
    ref = default_probe() if estimator is None else clone(estimator)
    ref.fit(X_tr, y_tr)
    np.testing.assert_array_equal(clf.predict_proba(X_te), ref.predict_proba(X_te))
    np.testing.assert_array_equal(clf.predict(X_te), ref.predict(X_te))


def test_default_estimator_is_the_default_probe(digits_split):
    X_tr, _, y_tr, _ = digits_split
    clf = KNNInterpolatedClassifier().fit(X_tr, y_tr)
    assert isinstance(clf.estimator_, LinearProbeClassifier)
    assert clf.estimator_.get_params() == default_probe().get_params()
    assert clf.estimator is None


def test_estimator_is_cloned(digits_split):
    X_tr, _, y_tr, _ = digits_split
    est = GaussianNB()
    clf = KNNInterpolatedClassifier(est).fit(X_tr, y_tr)
    assert clf.estimator is est and not hasattr(est, "classes_")
    assert clf.estimator_ is not est


def test_interpolation(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    params = dict(n_neighbors=8, temperature=0.1)
    mixed = KNNInterpolatedClassifier(knn_weight=0.3, **params).fit(X_tr, y_tr)
    est = KNNInterpolatedClassifier(knn_weight=0.0, **params).fit(X_tr, y_tr)
    knn = KNNInterpolatedClassifier(knn_weight=1.0, **params).fit(X_tr, y_tr)
    p_est, p_knn = est.predict_proba(X_te), knn.predict_proba(X_te)
    # the same two probabilities mixed by two formulas of two products and a
    # sum: each within gamma(3) of 0.7 p_est + 0.3 p_knn <= p_est + p_knn
    bound = 2 * gamma(3, np.float64) * (p_est + p_knn)
    mixed_by_hand = 0.7 * p_est + 0.3 * p_knn
    assert (np.abs(mixed.predict_proba(X_te) - mixed_by_hand) <= bound).all()


# bytes per (query, training row) pair of a float64 search block: the
# similarity, a mask byte and an int64 position
_PAIR_BYTES = 8 + 1 + 8


def _budget(query_rows, fit_rows):
    """working_memory (MiB) that gives blocks of query_rows x fit_rows."""
    return query_rows * fit_rows * _PAIR_BYTES / 2**20


def test_working_memory_does_not_change_results(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    X_tr, X_te, y_tr = X_tr[:300], X_te[:100], y_tr[:300]
    results = []
    budgets = [_budget(1, 3), _budget(1, 16), _budget(1, 17), _budget(3, 300),
               _budget(17, 300), None]
    for working_memory in budgets:
        clf = KNNInterpolatedClassifier(knn_weight=0.5, working_memory=working_memory)
        clf.fit(X_tr, y_tr)
        results.append(
            (clf.kneighbors(X_te), clf.kneighbors(), clf.predict_proba(X_te))
        )
    (d0, i0), (dl0, il0), p0 = results[0]
    # chunks change the matrix products' blocking: cosine distances within
    # 2 cosine_error; the probabilities (knn_weight=0.5, temperature=0.07,
    # 16 neighbours) as in the hand-written comparison above
    atol = 2 * cosine_error(X_tr.shape[1]) + 2 * gamma(1, np.float64)
    rtol = 2 * atol / 0.07 + gamma(48, np.float64)
    for (d, i), (dl, il), p in results[1:]:
        np.testing.assert_array_equal(i, i0)
        np.testing.assert_array_equal(il, il0)
        np.testing.assert_allclose(d, d0, rtol=0, atol=atol)
        np.testing.assert_allclose(dl, dl0, rtol=0, atol=atol)
        assert (np.abs(p - p0) <= rtol * p0).all()


def test_working_memory_sets_the_block_sizes():
    X = np.random.default_rng(0).normal(size=(300, 5))
    y = np.arange(300) % 3
    sizes = {}
    for working_memory in (_budget(1, 3), _budget(1, 300), _budget(17, 300), None):
        clf = KNNInterpolatedClassifier(working_memory=working_memory).fit(X, y)
        sizes[working_memory] = clf._block_sizes(100, 300)
    assert list(sizes.values()) == [(1, 3), (1, 300), (17, 300), (100, 300)]


@pytest.mark.parametrize("fit_rows", [1, 2, 3, 50])
def test_exact_ties_go_to_the_lower_training_index(fit_rows):
    # rows 0..9 repeated five times: every query has exact ties everywhere
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 4))
    X = np.tile(base, (5, 1))
    y = np.tile(np.arange(10) % 3, 5)
    clf = KNNInterpolatedClassifier(
        knn_weight=1.0, n_neighbors=7, working_memory=_budget(2, fit_rows),
        normalize=None,
    ).fit(X, y)
    _, ind = clf.kneighbors(base)
    for q, row in enumerate(ind):
        # the 5 copies of the query first, in index order, then the next best row
        np.testing.assert_array_equal(row[:5], q + 10 * np.arange(5))
        second = row[5:]
        assert second[1] - second[0] == 10 and second[0] < 10


def test_self_matches(digits_split):
    X_tr, _, y_tr, _ = digits_split
    clf = KNNInterpolatedClassifier(knn_weight=1.0, n_neighbors=5).fit(X_tr, y_tr)
    n = len(X_tr)
    # X=None: leave-one-out, nobody is their own neighbour
    dist, ind = clf.kneighbors()
    assert ind.shape == (n, 5)
    assert not (ind == np.arange(n)[:, None]).any()
    # it equals the search with the point itself removed, by brute force
    _, ind_all = clf.kneighbors(X_tr, n_neighbors=6)
    for i in range(0, n, 37):
        row = ind_all[i][ind_all[i] != i][:5]
        np.testing.assert_array_equal(ind[i], row)
    # passing X explicitly counts the training sample itself (documented)
    dist_x, ind_x = clf.kneighbors(X_tr)
    unique_rows = np.unique(X_tr, axis=0, return_counts=True)[1].max() == 1
    if unique_rows:
        np.testing.assert_array_equal(ind_x[:, 0], np.arange(n))
    # 1 - (cosine of a vector with itself), that cosine within cosine_error of 1
    atol = cosine_error(X_tr.shape[1]) + gamma(1, np.float64)
    np.testing.assert_allclose(dist_x[:, 0], 0.0, rtol=0, atol=atol)
    # so the training score of a 1-NN is perfect, the cross-validated one is not
    one_nn = KNNInterpolatedClassifier(knn_weight=1.0, n_neighbors=1)
    assert one_nn.fit(X_tr, y_tr).score(X_tr, y_tr) == 1.0
    assert cross_val_score(one_nn, X_tr, y_tr, cv=3).mean() < 1.0


def test_kneighbors_matches_sklearn_nearest_neighbors(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    X_tr, X_te = X_tr + 0.1, X_te + 0.1
    clf = KNNInterpolatedClassifier(knn_weight=1.0, normalize=None).fit(X_tr, y_tr)
    ref = NearestNeighbors(n_neighbors=16, metric="cosine", algorithm="brute")
    ref_dist, ref_ind = ref.fit(X_tr).kneighbors(X_te)
    dist, ind = clf.kneighbors(X_te)
    atol = 2 * cosine_error(X_tr.shape[1]) + 2 * gamma(1, np.float64)  # 1 - s
    np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=atol)
    assert (ind == ref_ind).mean() > 0.99  # sklearn breaks exact ties differently
    clf = KNNInterpolatedClassifier(knn_weight=1.0, metric="euclidean", normalize=None)
    ref = NearestNeighbors(n_neighbors=4).fit(X_tr)
    dist, ind = clf.fit(X_tr, y_tr).kneighbors(X_te, n_neighbors=4)
    # both expand |q|^2 - 2 q.t + |t|^2, the estimator around its centre
    c = clf.center_
    bound = euclidean_error(X_te - c, X_tr - c, dist)
    bound = bound + euclidean_error(X_te, X_tr, dist)
    assert (np.abs(dist - ref.kneighbors(X_te)[0]) <= bound).all()
    assert clf.kneighbors(X_te[:3], return_distance=False).shape == (3, 16)


def test_n_neighbors_larger_than_training_set():
    X, y = make_blobs(12, centers=2, random_state=0)
    clf = KNNInterpolatedClassifier(knn_weight=1.0, n_neighbors=100).fit(X, y)
    assert clf.predict_proba(X).shape == (12, 2)
    assert clf.kneighbors(X)[1].shape == (12, 12)
    assert clf.kneighbors()[1].shape == (12, 11)
    with pytest.raises(ValueError, match=r"n_neighbors <= 12"):
        clf.kneighbors(X, n_neighbors=13)
    with pytest.raises(ValueError, match=r"n_neighbors <= 11"):
        clf.kneighbors(n_neighbors=12)
    with pytest.raises(ValueError, match="positive integer"):
        clf.kneighbors(X, n_neighbors=0)


def test_knn_weight_one_skips_estimator_and_says_so():
    X, y = load_iris(return_X_y=True)
    clf = KNNInterpolatedClassifier(knn_weight=1.0).fit(X, y)
    assert clf.estimator_ is None
    clf.set_params(knn_weight=0.5)
    with pytest.raises(ValueError, match="fitted with knn_weight=1"):
        clf.predict(X)


def test_estimator_without_predict_proba_is_refused():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="predict_proba"):
        KNNInterpolatedClassifier(LinearSVC()).fit(X, y)


def test_accuracy_on_digits(digits_split):
    X_tr, X_te, y_tr, y_te = digits_split
    for weight in (0.0, 0.5, 1.0):
        clf = KNNInterpolatedClassifier(knn_weight=weight).fit(X_tr, y_tr)
        assert clf.score(X_te, y_te) > 0.93


def test_float32_stays_float32_and_agrees_with_float64(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    clf32 = KNNInterpolatedClassifier(knn_weight=1.0).fit(X_tr.astype(np.float32), y_tr)
    clf64 = KNNInterpolatedClassifier(knn_weight=1.0).fit(X_tr, y_tr)
    assert clf32._fit_X.dtype == np.float32
    proba32 = clf32.predict_proba(X_te.astype(np.float32))
    assert proba32.dtype == np.float64
    # float32 cosines within cosine_error(64, float32); exp(s / 0.07) moves by
    # that / 0.07 relative, a ratio of sums by twice that; 16 neighbours
    delta = cosine_error(X_tr.shape[1], np.float32) + cosine_error(X_tr.shape[1])
    rtol = 2 * delta / 0.07 + gamma(48, np.float64)
    proba64 = clf64.predict_proba(X_te)
    assert (np.abs(proba32 - proba64) <= rtol * proba64).all()


def test_string_labels_and_pandas_input():
    pd = pytest.importorskip("pandas")
    X, y = load_iris(return_X_y=True, as_frame=True)
    names = pd.Series(np.array(["setosa", "versicolor", "virginica"])[y])
    clf = KNNInterpolatedClassifier().fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["setosa", "versicolor", "virginica"])
    np.testing.assert_array_equal(clf.feature_names_in_, X.columns)
    pred = clf.predict(X)
    assert (pred == names.to_numpy()).mean() > 0.9
    np.testing.assert_array_equal(
        pred, KNNInterpolatedClassifier().fit(X.to_numpy(), names).predict(X.to_numpy())
    )


def test_deterministic(digits_split):
    X_tr, X_te, y_tr, _ = digits_split
    a = KNNInterpolatedClassifier().fit(X_tr, y_tr)
    b = clone(a).fit(X_tr, y_tr)
    np.testing.assert_array_equal(a.predict_proba(X_te), b.predict_proba(X_te))
    np.testing.assert_array_equal(a.predict_proba(X_te), a.predict_proba(X_te))


# ----------------------------------------------------------------- properties


@st.composite
def _problems(draw):
    n_classes = draw(st.integers(2, 4))
    n_samples = draw(st.integers(n_classes, 30))
    n_features = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    X = rng.normal(size=(n_samples, n_features))
    y = np.concatenate(
        [np.arange(n_classes), rng.integers(0, n_classes, n_samples - n_classes)]
    )
    return X.astype(dtype), y


@settings(max_examples=30, deadline=None)
@given(
    problem=_problems(),
    metric=st.sampled_from(["cosine", "euclidean"]),
    normalize=st.sampled_from(["center_l2", "l2", None]),
    n_neighbors=st.integers(1, 40),
    block_rows=st.integers(1, 40),
)
def test_shapes_and_dtypes(problem, metric, normalize, n_neighbors, block_rows):
    X, y = problem
    clf = KNNInterpolatedClassifier(
        GaussianNB(),
        metric=metric,
        normalize=normalize,
        n_neighbors=n_neighbors,
        working_memory=_budget(block_rows, block_rows),
    ).fit(X, y)
    n, n_classes = X.shape[0], len(np.unique(y))
    proba = clf.predict_proba(X)
    assert proba.shape == (n, n_classes) and proba.dtype == np.float64
    assert np.isfinite(proba).all() and (proba >= 0).all()
    # GaussianNB's probabilities exp(jll - logsumexp(jll)) are in X's dtype:
    # each exponent is off by about u (|jll| + |logsumexp|) and the sum of
    # n_classes of them by gamma(n_classes) more; the kNN part is float64
    jll = np.abs(clf.estimator_.predict_joint_log_proba(X)).max(axis=1)
    u = np.finfo(X.dtype).eps / 2
    bound = (2 * jll + 2) * u + gamma(n_classes + 4, X.dtype) + gamma(n + 4, np.float64)
    assert (np.abs(proba.sum(axis=1) - 1.0) <= bound).all()
    pred = clf.predict(X)
    assert pred.shape == (n,) and np.isin(pred, clf.classes_).all()
    k = min(n_neighbors, n)
    dist, ind = clf.kneighbors(X)
    assert dist.shape == ind.shape == (n, k) and ind.dtype == np.intp
    assert (np.diff(dist, axis=1) >= 0).all()  # monotone maps of sorted keys
    assert ((ind >= 0) & (ind < n)).all()
    for row in ind:
        assert len(set(row)) == k
    assert not (clf.kneighbors(return_distance=False) == np.arange(n)[:, None]).any()


@settings(max_examples=25, deadline=None)
@given(
    problem=_problems(),
    bad=st.sampled_from(["nan", "inf", "one class", "features", "empty"]),
)
def test_bad_input_raises_clear_value_error(problem, bad):
    X, y = problem
    clf = KNNInterpolatedClassifier(GaussianNB())
    if bad == "one class":
        with pytest.raises(ValueError, match="at least 2 classes.*got 1 class"):
            clf.fit(X, np.zeros_like(y))
        return
    if bad == "empty":
        with pytest.raises(ValueError, match="0 sample"):
            clf.fit(X[:0], y[:0])
        return
    X_bad = X.astype(np.float64)
    if bad == "features":
        clf.fit(X, y)
        X_bad = np.hstack([X_bad, X_bad])
        message = f"X has {2 * X.shape[1]} features.*expecting {X.shape[1]}"
    else:
        X_bad[0, 0] = np.nan if bad == "nan" else np.inf
        what = "NaN" if bad == "nan" else "infinity"
        message = re.escape(f"Input X contains {what}")
        with pytest.raises(ValueError, match=message):
            clf.fit(X_bad, y)
        clf.fit(X, y)
    for method in (clf.predict, clf.predict_proba, clf.kneighbors):
        with pytest.raises(ValueError, match=message):
            method(X_bad)


def test_float32_euclidean_on_offset_data_ranks_like_float64():
    # |q|^2 - 2 q.t + |t|^2 cancels badly in float32 far from the origin;
    # the search centres raw Euclidean features first.
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1200, 16)) + 1000).astype(np.float32)
    y = rng.integers(0, 3, 1200)
    clf = KNNInterpolatedClassifier(
        knn_weight=1.0, metric="euclidean", normalize=None, n_neighbors=5
    ).fit(X[:1000], y[:1000])
    dist, ind = clf.kneighbors(X[1000:])
    ref = NearestNeighbors(n_neighbors=5).fit(X[:1000].astype(np.float64))
    ref_dist, ref_ind = ref.kneighbors(X[1000:].astype(np.float64))
    np.testing.assert_array_equal(ind, ref_ind)
    # the estimator expands in float32 around its centre (exact subtraction:
    # the centre is an integer near the data), the reference in float64
    c = clf.center_
    bound = euclidean_error(
        X[1000:] - c, X[:1000] - c, dist, np.float32
    ) + euclidean_error(X[1000:], X[:1000], dist)
    assert (np.abs(dist - ref_dist) <= bound).all()
