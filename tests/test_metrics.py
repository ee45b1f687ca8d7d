"""Layer metrics: hand computations, the papers' formulas, scikit-learn, invariances."""

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from sklearn_layers import (
    LayerFeatureTransformer,
    MemoryCache,
    layer_metrics,
    layer_metrics_from_features,
)
from sklearn_layers.metrics import (
    effective_rank,
    get_layer_metric,
    get_layer_metric_names,
    knn_loo_accuracy,
    matrix_entropy,
    nc1,
    twonn_dimension,
)
from sklearn_layers.utils.toy import make_mlp

from _helpers import RowCounter

# float64 arithmetic on these small matrices: relative errors of order n * 1e-16.
F64 = dict(rtol=1e-10, atol=1e-12)


def random_features(rng, n=60, d=8):
    return rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)


# -- effective rank (RankMe) ----------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 37])
def test_effective_rank_of_identity_is_its_size(n):
    assert effective_rank(np.eye(n)) == pytest.approx(n, rel=1e-12)


def test_effective_rank_follows_the_paper_formula(rng):
    F = random_features(rng, n=30, d=50)
    sigma = np.linalg.svd(F, compute_uv=False)
    p = sigma / sigma.sum()
    assert effective_rank(F) == pytest.approx(np.exp(-(p * np.log(p)).sum()), rel=1e-10)


def test_effective_rank_of_rank_one_and_zero():
    assert effective_rank(np.outer(np.arange(1.0, 41.0), np.ones(7))) == pytest.approx(1.0)
    assert effective_rank(np.zeros((5, 3))) == 0.0


def test_effective_rank_two_equal_directions():
    F = np.zeros((10, 4))
    F[:5, 0], F[5:, 1] = 1.0, 1.0  # two orthogonal directions, equal singular values
    assert effective_rank(F) == pytest.approx(2.0, rel=1e-12)


def test_effective_rank_invariances(rng):
    F = random_features(rng)
    rotation = ortho_group.rvs(F.shape[1], random_state=0)
    expected = effective_rank(F)
    assert effective_rank(F @ rotation) == pytest.approx(expected, rel=1e-10)
    assert effective_rank(7.5 * F) == pytest.approx(expected, rel=1e-10)
    assert effective_rank(F[::-1]) == pytest.approx(expected, rel=1e-10)


# -- matrix entropy ---------------------------------------------------------------


def test_entropy_of_rank_one_gram_is_zero(rng):
    u = rng.normal(size=(50, 1))
    F = u @ rng.normal(size=(1, 12))
    assert matrix_entropy(F) == pytest.approx(0.0, abs=1e-12)
    assert matrix_entropy(F, normalize=False) == pytest.approx(0.0, abs=1e-12)


def test_entropy_is_von_neumann_entropy_of_the_trace_normalised_gram(rng):
    F = random_features(rng, n=20, d=9)
    gram = F @ F.T
    eigenvalues = np.clip(np.linalg.eigvalsh(gram / np.trace(gram)), 0, None)
    p = eigenvalues[eigenvalues > 1e-14]
    expected = -(p * np.log(p)).sum()
    assert matrix_entropy(F, normalize=False) == pytest.approx(expected, rel=1e-9)
    assert matrix_entropy(F) == pytest.approx(expected / np.log(9), rel=1e-9)


def test_entropy_of_identity_is_maximal():
    assert matrix_entropy(np.eye(6)) == pytest.approx(1.0, rel=1e-12)
    assert matrix_entropy(np.eye(6), normalize=False) == pytest.approx(np.log(6), rel=1e-12)


def test_entropy_invariances(rng):
    F = random_features(rng, n=40, d=10)
    expected = matrix_entropy(F)
    assert matrix_entropy(1e-3 * F) == pytest.approx(expected, rel=1e-10)
    assert matrix_entropy(1e3 * F) == pytest.approx(expected, rel=1e-10)
    rotation = ortho_group.rvs(10, random_state=1)
    assert matrix_entropy(F @ rotation) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("shape", [(30, 200), (200, 30)])
def test_spectral_metrics_do_not_depend_on_chunking(rng, shape):
    # working_memory is MiB: 1e-4 MiB forces one column (or row) per block.
    F = rng.normal(size=shape).astype(np.float32)
    for metric in (effective_rank, matrix_entropy):
        assert metric(F, working_memory=1e-4) == pytest.approx(metric(F), rel=1e-10)


# -- TwoNN ------------------------------------------------------------------------


def test_twonn_by_hand():
    # 1-D points 0, 1, 3, 7: (r1, r2) = (1, 3), (1, 2), (2, 3), (4, 6).
    F = np.array([[0.0], [1.0], [3.0], [7.0]])
    expected = 3 / (np.log(3) + np.log(2) + np.log(1.5) + np.log(1.5))
    assert twonn_dimension(F) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dim", [2, 5])
def test_twonn_finds_the_dimension_of_a_flat_manifold(dim):
    # Gaussian points on a dim-dimensional plane inside R^10. Under the
    # estimator's model the standard deviation is dim / sqrt(n - 2); shared
    # neighbour pairs inflate it (60 seeds: x1.15 for dim=2, x1.33 for dim=5),
    # so the band is 4 x 1.4 x dim / sqrt(n - 2).
    n = 2000
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(10, dim)))[0]
    F = rng.normal(size=(n, dim)) @ basis.T + 5.0
    assert twonn_dimension(F) == pytest.approx(dim, abs=4 * 1.4 * dim / np.sqrt(n - 2))


def test_twonn_is_invariant_to_similarities_and_chunking(rng):
    F = rng.normal(size=(300, 6))
    expected = twonn_dimension(F)
    rotation = ortho_group.rvs(6, random_state=2)
    assert twonn_dimension(3.0 * F @ rotation - 4.0) == pytest.approx(expected, rel=1e-8)
    assert twonn_dimension(F, working_memory=0.01) == pytest.approx(expected, rel=1e-12)


def test_twonn_leaves_out_duplicates_and_needs_three_rows():
    F = np.array([[0.0], [1.0], [3.0], [7.0]])
    with_duplicate = np.vstack([F, [[20.0], [20.0]]])
    # The two copies of 20 have r1 = 0; 7 now has neighbours 3 (4) and 1 (6) still.
    assert twonn_dimension(with_duplicate) == pytest.approx(twonn_dimension(F), rel=1e-12)
    with pytest.raises(ValueError, match="at least 3"):
        twonn_dimension(np.array([[0.0], [0.0], [1.0], [1.0]]))
    square = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert twonn_dimension(square) == np.inf  # both neighbours equally far: r2 / r1 = 1


def test_twonn_duplicates_in_many_dimensions_match_exact_distances():
    # Equal rows in R^10 come out of the squared-distance formula about 1e-5
    # apart, not 0; they must still be left out, as exact differences say.
    rng = np.random.default_rng(1)
    basis = np.linalg.qr(rng.normal(size=(10, 3)))[0]
    F = (rng.normal(size=(450, 3)) @ basis.T + 4.0).astype(np.float32)
    F = np.vstack([F, F[:50]])
    X = F.astype(np.float64)
    distances = cdist(X, X)  # exact differences, no cancellation
    np.fill_diagonal(distances, np.inf)
    r1, r2 = np.sort(distances, axis=1)[:, :2].T
    kept = r1 > 0
    expected = (kept.sum() - 1) / np.log(r2[kept] / r1[kept]).sum()
    assert kept.sum() == 400
    assert twonn_dimension(F) == pytest.approx(expected, rel=1e-9)
    assert twonn_dimension(F) == pytest.approx(3, abs=4 * 1.4 * 3 / np.sqrt(398))


# -- NC1 --------------------------------------------------------------------------


def test_nc1_of_collapsed_classes_is_zero(rng):
    means = rng.normal(size=(4, 6))
    y = np.repeat(np.arange(4), 10)
    assert nc1(means[y], y) == pytest.approx(0.0, abs=1e-12)


def test_nc1_by_hand():
    # Class means -1 and 1 (mu_G = 0, Sigma_B = 1), spread +-a: Sigma_W = a^2.
    a = 0.3
    F = np.array([[-1 - a], [-1 + a], [1 - a], [1 + a]])
    assert nc1(F, ["x", "x", "y", "y"]) == pytest.approx(a**2 / 2, rel=1e-12)


@pytest.mark.parametrize("d", [3, 12])
def test_nc1_matches_the_paper_formula(rng, d):
    # Unbalanced classes; with d=3 < C=4 Sigma_B is full rank, with d=12 it is not.
    y = np.repeat(np.arange(4), [5, 9, 13, 7])
    F = rng.normal(size=(len(y), d)) + 2.0 * rng.normal(size=(4, d))[y]
    mu_g = F.mean(axis=0)
    means = np.array([F[y == c].mean(axis=0) for c in range(4)])
    within = (F - means[y]).T @ (F - means[y]) / len(F)
    between = (means - mu_g).T @ (means - mu_g) / 4
    expected = np.trace(within @ np.linalg.pinv(between)) / 4
    assert nc1(F, y) == pytest.approx(expected, rel=1e-9)
    assert nc1(F, y, working_memory=1e-4) == pytest.approx(expected, rel=1e-9)


def test_nc1_edge_cases(rng):
    with pytest.raises(ValueError, match="two classes"):
        nc1(rng.normal(size=(5, 2)), np.zeros(5))
    same_means = np.array([[-1.0], [1.0], [-1.0], [1.0]])
    assert nc1(same_means, [0, 0, 1, 1]) == np.inf
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        nc1(rng.normal(size=(5, 2)), [0, 1, 0])


# -- kNN leave-one-out ------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 7])
def test_knn_loo_equals_scikit_learn_leave_one_out(k):
    X, y = load_digits(return_X_y=True)
    X, y = X[:150] + np.random.default_rng(k).normal(scale=1e-3, size=(150, 64)), y[:150]
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    expected = cross_val_score(knn, X, y, cv=LeaveOneOut()).mean()
    assert knn_loo_accuracy(X, y, n_neighbors=k) == pytest.approx(expected, abs=1e-12)
    assert knn_loo_accuracy(X, y, n_neighbors=k, working_memory=0.002) == pytest.approx(
        expected, abs=1e-12
    )


def test_knn_loo_string_labels_and_bad_k(rng):
    X, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    assert knn_loo_accuracy(X, names) == knn_loo_accuracy(X, y)
    with pytest.raises(ValueError, match="smaller than the number of samples"):
        knn_loo_accuracy(X[:5], y[:5], n_neighbors=5)
    with pytest.raises(ValueError, match="n_neighbors must be an int"):
        knn_loo_accuracy(X, y, n_neighbors=0)


# -- registry ---------------------------------------------------------------------


def test_registry_names_functions_directions():
    assert get_layer_metric_names() == [
        "effective_rank", "matrix_entropy", "twonn_dimension", "nc1", "knn_loo_accuracy",
    ]
    assert get_layer_metric("nc1") == (nc1, False, True)
    assert get_layer_metric("effective_rank").function is effective_rank
    with pytest.raises(ValueError, match="Unknown layer metric 'rankme'.*effective_rank"):
        get_layer_metric("rankme")


def test_input_validation(rng):
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="Expected 2D array"):
        matrix_entropy(np.ones(5))
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        effective_rank(np.ones((1, 3)))


# -- layer_metrics ----------------------------------------------------------------


def test_from_features_matches_single_metrics(rng):
    y = np.repeat([0, 1, 2], 20)
    layers = {"a": random_features(rng), "b": random_features(rng, d=3)}
    table = layer_metrics_from_features(layers, y, max_samples=None)
    assert table["layer"].tolist() == ["a", "b"]
    assert table["layer_index"].tolist() == [0, 1]
    assert table["n_samples"].tolist() == [60, 60]
    assert table["n_features"].tolist() == [8, 3]
    for layer, F in layers.items():
        row = table.set_index("layer").loc[layer]
        assert row["effective_rank"] == effective_rank(F)
        assert row["matrix_entropy"] == matrix_entropy(F)
        assert row["twonn_dimension"] == twonn_dimension(F)
        assert row["nc1"] == nc1(F, y)
        assert row["knn_loo_accuracy"] == knn_loo_accuracy(F, y)
        assert row["seconds"] >= 0


def test_label_free_without_y_and_metric_choice(rng):
    layers = {"a": random_features(rng)}
    table = layer_metrics_from_features(layers)
    assert "nc1" not in table and "knn_loo_accuracy" not in table
    assert {"effective_rank", "matrix_entropy", "twonn_dimension"} <= set(table)
    only = layer_metrics_from_features(layers, metrics="effective_rank")
    assert only.columns.tolist() == [
        "layer", "layer_index", "n_samples", "n_features", "effective_rank", "seconds",
    ]
    with pytest.raises(ValueError, match="'nc1' needs class labels"):
        layer_metrics_from_features(layers, metrics=["nc1"])
    with pytest.raises(ValueError, match="Unknown layer metric"):
        layer_metrics_from_features(layers, metrics=["rank"])


def test_subsample_is_stratified_shared_and_reproducible(rng):
    y = np.repeat([0, 1], [300, 100])
    F = np.arange(400.0)[:, None] * np.ones((1, 3)) + rng.normal(size=(400, 3))
    layers = {"a": F, "b": 2 * F}
    first = layer_metrics_from_features(layers, y, max_samples=80, random_state=0)
    again = layer_metrics_from_features(layers, y, max_samples=80, random_state=0)
    metric_columns = get_layer_metric_names()
    assert_allclose(first[metric_columns].to_numpy(), again[metric_columns].to_numpy())
    assert first["n_samples"].tolist() == [80, 80]
    # Both layers saw the same rows: b = 2a, and every metric here is scale-free.
    assert_allclose(first.loc[0, metric_columns].to_numpy(dtype=float),
                    first.loc[1, metric_columns].to_numpy(dtype=float), **F64)


def test_subsample_keeps_class_shares():
    from sklearn_layers.metrics._table import _subsample

    y = np.repeat([0, 1], [300, 100])
    rows = _subsample(400, y, 80, 0)
    assert len(rows) == 80 and len(np.unique(rows)) == 80
    assert np.bincount(y[rows]).tolist() == [60, 20]
    assert _subsample(50, None, 80, 0).tolist() == list(range(50))


def test_from_features_bad_input(rng):
    with pytest.raises(TypeError, match="non-empty dict"):
        layer_metrics_from_features([rng.normal(size=(5, 2))])
    with pytest.raises(ValueError, match="same number of rows"):
        layer_metrics_from_features({"a": rng.normal(size=(5, 2)), "b": rng.normal(size=(6, 2))})
    with pytest.raises(ValueError, match="max_samples must be an int >= 3"):
        layer_metrics_from_features({"a": rng.normal(size=(5, 2))}, max_samples=1)


def test_layer_metrics_extracts_only_the_sampled_rows_once():
    X, y = load_iris(return_X_y=True)
    net = make_mlp(4, hidden=(16, 8))
    counter = RowCounter(net)
    table = layer_metrics(net, X, y, max_samples=60, random_state=0, cache=MemoryCache())
    counter.remove()
    assert counter.rows == 60  # fit's one-row width probe is cached for transform
    assert table["layer"].tolist() == ["1", "3", "4"]
    assert table["n_samples"].tolist() == [60, 60, 60]
    assert table.attrs["extraction_seconds"] > 0


def test_layer_metrics_equals_the_features_version():
    X, y = load_iris(return_X_y=True)
    net = make_mlp(4, hidden=(16, 8))
    table = layer_metrics(net, X, y, max_samples=None, cache=None)
    lft = LayerFeatureTransformer(net, layers="all", cache=None).fit(X)
    features = lft.transform(X)
    expected = layer_metrics_from_features(
        {name: features[:, cols] for name, cols in lft.feature_slices_.items()}, y,
        max_samples=None,
    )
    columns = ["layer", "n_features", *get_layer_metric_names()]
    assert table[columns].equals(expected[columns])


def test_layer_metrics_samples_text_lists_and_dataframes():
    from sklearn_layers.metrics._table import _take_rows

    rows = np.array([0, 2])
    assert _take_rows(["a", "b", "c"], rows) == ["a", "c"]
    import pandas as pd

    frame = pd.DataFrame({"x": [1, 2, 3]}, index=[10, 11, 12])
    assert _take_rows(frame, rows).index.tolist() == [10, 12]
    import torch

    assert _take_rows(torch.arange(3), rows).tolist() == [0, 2]
    assert _take_rows({"ids": torch.arange(3)}, rows)["ids"].tolist() == [0, 2]


def test_digit_cnn_classes_separate_with_depth():
    # Real network, real data: an MNIST CNN's classes are far better separated
    # at its 256-wide hidden layer than after its first convolution stage.
    from sklearn_layers.datasets import load_digits_28x28
    from sklearn_layers.models import load_digit_cnn

    X, y = load_digits_28x28(return_X_y=True)
    table = layer_metrics(load_digit_cnn(), X, y, max_samples=600, random_state=0,
                          metrics=["nc1", "knn_loo_accuracy"]).set_index("layer")
    first, hidden = table.loc["conv_layers.2"], table.loc["fc_layers.1"]
    assert hidden["nc1"] < first["nc1"] / 4
    assert hidden["knn_loo_accuracy"] > first["knn_loo_accuracy"] + 0.1
