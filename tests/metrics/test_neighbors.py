"""TwoNN and kNN leave-one-out: hand computations, scikit-learn, invariances."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group
from sklearn.datasets import load_digits, load_iris
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from sklearn_layers.metrics import knn_loo_accuracy, twonn_dimension

# float64 arithmetic on these small matrices: relative errors of order n * 1e-16.
F64 = dict(rtol=1e-10, atol=1e-12)


def random_features(rng, n=60, d=8):
    return rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)


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
