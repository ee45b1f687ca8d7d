"""Effective rank and matrix entropy: the papers' formulas, hand computations, invariances."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from sklearn_layers.metrics import effective_rank, matrix_entropy

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
