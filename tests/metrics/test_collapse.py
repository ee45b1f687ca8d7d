"""NC1: the paper's formula, hand computations, edge cases."""

import numpy as np
import pytest

from sklearn_layers.metrics import nc1

# float64 arithmetic on these small matrices: relative errors of order n * 1e-16.
F64 = dict(rtol=1e-10, atol=1e-12)


def random_features(rng, n=60, d=8):
    return rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)


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
