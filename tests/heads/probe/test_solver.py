"""The linear probe's solver pieces: moments, products, preconditioners, L-BFGS."""

import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from sklearn_layers.heads.probe._lbfgs import minimize_lbfgs, minimize_one
from sklearn_layers.heads.probe._preconditioners import SHRINKAGE, Diagonal, Whitening
from sklearn_layers.heads.probe._solver import (
    StandardisedRows,
    moments,
    moments_of_each,
    standardize,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_moments_are_standard_scalers(dtype, weighted):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 6)) * [1, 10, 1e-3, 1, 5, 1] + 50).astype(dtype)
    X[:, 3] = 7.25  # constant
    # a feature of size 1e-32 (as MiniLM's last layer has): its squares
    # underflow float32, yet StandardScaler scales it to unit variance
    X[:, 5] = rng.normal(size=300) * 1e-32
    weights = rng.uniform(0, 3, size=300) if weighted else np.ones(300)
    mean, scale, variances = moments(X, weights, scale=True)
    with np.errstate(invalid="ignore"):  # its weighted variance of the constant
        # column rounds below 0 (a sqrt warning); it scales that column by 1
        ref = StandardScaler().fit(X.astype(np.float64), sample_weight=weights)
    # float32 rows centred in float32 (2 u on a square) and the squares summed
    # in float32 over blocks of 256 rows (gamma(256)): the variance within
    # about 258 u, the scale within half that, 65 eps32 (300 eps32 bounds it)
    rtol = 1e-12 if dtype == np.float64 else 300 * np.finfo(np.float32).eps
    np.testing.assert_allclose(mean, ref.mean_, rtol=1e-12)
    np.testing.assert_allclose(scale, ref.scale_, rtol=rtol)
    # the constant feature: a variance within rounding of 0 (StandardScaler's rule)
    eps = np.finfo(np.float64).eps
    assert scale[3] == 1.0 and variances[3] <= (weights.sum() * 7.25 * eps) ** 2
    np.testing.assert_allclose(variances[[0, 1, 2, 4, 5]], 1.0, rtol=rtol)
    Z = standardize(X, mean, scale)
    assert Z.dtype == dtype
    assert np.abs(Z[:, 3]).max() <= 2 * 7.25 * eps  # rounding of the weighted mean


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moments_of_each_column_are_standard_scalers(dtype):
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 6)) * [1, 10, 1e-3, 1, 5, 1] + 50).astype(dtype)
    X[:, 3] = 7.25  # constant
    folds = np.zeros((300, 3))
    folds[:200, 0] = 1  # a fold's training rows
    folds[100:, 1] = 1
    folds[:, 2] = np.bincount(rng.integers(0, 300, 300), minlength=300)  # a bootstrap
    centre = X.astype(np.float64).mean(axis=0)
    means, scales, variances = moments_of_each(X, folds, centre=centre, scale=True)
    X64 = X.astype(np.float64)
    for k in range(folds.shape[1]):
        w = folds[:, k]
        mean = w @ X64 / w.sum()  # the two-pass float64 formula, by hand
        var = w @ np.square(X64 - mean) / w.sum()
        np.testing.assert_allclose(means[k], mean, rtol=1e-12)
        # recentred second moments: float64 rounding of squares around the
        # average mean, relative to the variance: eps * (offset / spread)^2
        # is 2e-16 * (50 / 1e-3)^2 ~ 5e-7 for the third column, 1e-12 for the rest
        spread = np.sqrt(var)
        np.testing.assert_allclose(scales[k, [0, 1, 4, 5]], spread[[0, 1, 4, 5]],
                                   rtol=1e-12)
        np.testing.assert_allclose(scales[k, 2], spread[2], rtol=1e-6)
        assert scales[k, 3] == 1.0 and variances[k, 3] == 0.0
        alone = moments(X, w, scale=True)  # centres float32 rows in float32
        rtol = 1e-12 if dtype == np.float64 else 300 * np.finfo(np.float32).eps
        np.testing.assert_allclose(scales[k, [0, 1, 4, 5]], alone[1][[0, 1, 4, 5]],
                                   rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_feature_constant_in_one_columns_rows_is_constant_there(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(dtype)
    X[:200, 1] = 0.0  # blank in every training row of the first fold (a pixel)
    X[:200, 2] = 0.1
    folds = np.zeros((300, 2))
    folds[:200, 0] = 1
    folds[100:, 1] = 1
    centre = X.astype(np.float64).mean(axis=0)
    means, scales, variances = moments_of_each(X, folds, centre=centre, scale=True)
    alone = moments(X, folds[:, 0], scale=True)
    # scaled by 1, their variance within the rounding of the weighted mean
    # (StandardScaler's rule: at most (n * mean * eps)^2)
    assert (scales[0, 1:] == 1.0).all()
    assert (variances[0, 1:] <= (200 * 0.1 * np.finfo(np.float64).eps) ** 2).all()
    # a 200-row weighted mean, summed in another order: within 200 float64 eps
    np.testing.assert_allclose(means[0, 1:], alone[0][1:], rtol=200 * np.finfo(np.float64).eps)
    assert (scales[1, 1:] != 1.0).all()  # they vary in the second fold's rows


def test_products_on_a_torch_device_equal_numpys(monkeypatch):
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(200, 7)).astype(np.float32)
    W = rng.normal(size=(3, 7))
    R = rng.normal(size=(200, 3))
    weights = rng.uniform(0.1, 2, size=200)
    on_numpy = StandardisedRows(Z, torch.device("cpu"))
    on_torch = StandardisedRows(Z, torch.device("cpu"))
    # the code path of a non-CPU device, run on the CPU
    on_torch._on_cpu, on_torch._Z = False, torch.from_numpy(Z)
    eps = np.finfo(np.float32).eps

    def bound(A, B):
        # |fl(sum a b) - sum a b| <= (n + 1) eps32 sum |a| |b| (the +1: the
        # float64 factor rounded to float32)
        return (A.shape[1] + 1) * eps * (np.abs(A) @ np.abs(B))

    for W_ in (W, W[:1]):
        np.testing.assert_allclose(on_torch.scores(W_), on_numpy.scores(W_), rtol=0,
                                   atol=2 * bound(Z, W_.T).max())
    for R_ in (R, R[:, :1]):
        np.testing.assert_allclose(
            on_torch.transposed_product(R_), on_numpy.transposed_product(R_),
            rtol=0, atol=2 * bound(R_.T, Z).max(),
        )
    target = np.sign(Z[:, 0])
    passes = [rows.vector_pass(W[0], lambda part, s: np.tanh(s) - target[part])
              for rows in (on_torch, on_numpy)]
    np.testing.assert_allclose(passes[0][0], passes[1][0], rtol=0,
                               atol=2 * bound(Z, W[:1].T).max())
    np.testing.assert_allclose(passes[0][1], passes[1][1], rtol=0,
                               atol=4 * bound((np.abs(target) + 1)[None], Z).max())
    for w in (np.ones(200), weights):
        Zw = Z * np.sqrt(w / w.sum())[:, None]
        np.testing.assert_allclose(
            on_torch.covariance(w), on_numpy.covariance(w), rtol=0,
            atol=2 * bound(Zw.T, Zw).max(),
        )
    ref = (Z.T.astype(np.float64) * weights) @ Z / weights.sum()
    Zw = Z * np.sqrt(weights / weights.sum())[:, None]
    np.testing.assert_allclose(on_numpy.covariance(weights), ref, rtol=0,
                               atol=bound(Zw.T, Zw).max())


def _families(d=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(40, d))
    covariance = A.T @ A / 40
    return {
        "diagonal": Diagonal(np.diag(covariance).copy()),
        "whiten": Whitening(covariance),
    }, covariance


@pytest.mark.parametrize("name", ["diagonal", "whiten"])
def test_preconditioners_are_invertible_and_transposed(name):
    families, covariance = _families()
    maps = families[name].at(np.array([0.25, 0.1]), np.array([1e-3, 1e-1]))
    rng = np.random.default_rng(1)
    G = rng.normal(size=(2, 3, 6))
    W = maps.to_model(G)
    np.testing.assert_allclose(maps.to_solver(W), G, rtol=1e-9, atol=1e-9)
    grad_W = rng.normal(size=(2, 3, 6))
    # the gradient map is the transpose of to_model: <g, M(G)> = <M^T(g), G>
    np.testing.assert_allclose(
        np.einsum("pkd,pkd->p", grad_W, W),
        np.einsum("pkd,pkd->p", maps.gradient(grad_W), G),
        rtol=1e-10,
    )
    if name != "diagonal":  # whitening: c Sigma_s + eps I becomes the identity
        for p, (c, eps) in enumerate([(0.25, 1e-3), (0.1, 1e-1)]):
            M = maps.to_model(np.eye(6)[None].repeat(2, axis=0))[p]
            shrunk = (1 - SHRINKAGE) * covariance + SHRINKAGE * np.diag(np.diag(covariance))
            H = c * shrunk + eps * np.eye(6)
            np.testing.assert_allclose(M @ H @ M.T, np.eye(6), atol=1e-9)


def test_whitening_shares_one_factor_between_close_problems():
    families, covariance = _families()
    shrunk = (1 - SHRINKAGE) * covariance + SHRINKAGE * np.diag(np.diag(covariance))
    # a path's five folds at one C: close curvatures, one penalty
    curvatures, penalties = np.array([0.20, 0.21, 0.22, 0.20, 0.25]), np.full(5, 1e-3)
    maps = families["whiten"].at(curvatures, penalties)
    assert len(maps.L) == 1
    # the factor is at the mean curvature c: problem p's matrix c_p S + eps I
    # becomes one whose eigenvalues lie between c_p / c and 1
    mean = curvatures.mean()
    M = maps.to_model(np.eye(6)[None].repeat(5, axis=0))
    for p, c in enumerate(curvatures):
        H = c * shrunk + penalties[p] * np.eye(6)
        eigenvalues = np.linalg.eigvalsh(M[p] @ H @ M[p].T)
        low, high = sorted([c / mean, 1.0])
        assert (eigenvalues >= low - 1e-9).all() and (eigenvalues <= high + 1e-9).all()
    # curvatures 2x apart never share, even each within 1.5x of a third
    maps = families["whiten"].at(np.array([1.0, 1.4, 0.7]), np.full(3, 1e-3))
    assert maps.which[1] != maps.which[2]
    # values of C 100 apart: a factor each
    maps = families["whiten"].at(np.full(3, 0.2), np.array([1e-3, 1e-1, 1e-3]))
    assert len(maps.L) == 2 and maps.which[0] == maps.which[2] != maps.which[1]


def test_whitening_survives_a_slightly_indefinite_covariance():
    families, covariance = _families()
    vals, vecs = np.linalg.eigh(covariance)
    vals[0] = -1e-9  # what float32 rounding can leave
    family = Whitening((vecs * vals) @ vecs.T)
    maps = family.at(np.array([1.0]), np.array([0.0]))
    assert np.isfinite(maps.to_model(np.eye(6)[None])).all()


def _quadratic(H, target):
    """A batch of quadratics ``0.5 (x - t) H (x - t)``, measure = max |gradient|."""

    def fun(x, index):
        diff = x - target[index]
        grad = np.einsum("pij,pj->pi", H[index], diff)
        values = 0.5 * np.einsum("pi,pi->p", diff, grad)
        return values, grad, np.abs(grad).max(axis=1)

    return fun


def test_a_batch_follows_each_problems_own_iterates():
    rng = np.random.default_rng(0)
    n_problems, n = 4, 12
    H = np.stack([(lambda A: A @ A.T / n + np.diag(rng.uniform(0.1, 10, n)))(
        rng.normal(size=(n, n))) for _ in range(n_problems)])
    target = rng.normal(size=(n_problems, n))
    fun = _quadratic(H, target)
    x0 = np.zeros((n_problems, n))
    tol = 1e-6
    x, measure, n_iter, status = minimize_lbfgs(fun, x0, tol=tol, max_iter=500)
    assert (status == "converged").all() and (measure <= tol).all()
    # ||x - t|| <= ||H (x - t)|| / lambda_min(H) <= sqrt(n) tol / lambda_min
    smallest = np.linalg.eigvalsh(H)[:, 0]
    assert (np.linalg.norm(x - target, axis=1) <= np.sqrt(n) * tol / smallest).all()
    for p in range(n_problems):
        alone = _quadratic(H[p : p + 1], target[p : p + 1])
        xp, _, n_p, _ = minimize_lbfgs(alone, x0[p : p + 1], tol=tol, max_iter=500)
        assert n_p[0] == n_iter[p]
        np.testing.assert_allclose(xp[0], x[p], rtol=0, atol=1e-12)


def test_lbfgs_reports_max_iter_and_a_start_at_the_optimum():
    H = np.diag(np.linspace(1, 100, 10))[None]
    target = np.ones((1, 10))
    fun = _quadratic(H, target)
    _, _, n_iter, status = minimize_lbfgs(fun, np.zeros((1, 10)), tol=1e-12, max_iter=3)
    assert n_iter[0] == 3 and status[0] == "max_iter"
    _, _, n_iter, status = minimize_lbfgs(fun, target.copy(), tol=1e-12, max_iter=3)
    assert n_iter[0] == 0 and status[0] == "converged"


@pytest.mark.parametrize("line_search", ["armijo", "wolfe"])
def test_one_problem_reaches_the_optimum_of_an_ill_scaled_quadratic(line_search):
    # curvatures from 1 to 1e4: no unit step is right in every direction
    H = np.diag(np.geomspace(1, 1e4, 12))[None]
    target = np.linspace(-1, 1, 12)[None]
    fun = _quadratic(H, target)
    tol = 1e-5  # decreases stay above the stalling rule's 64 eps
    x, measure, n_iter, status = minimize_one(
        fun, np.zeros((1, 12)), tol=tol, max_iter=500, line_search=line_search
    )
    assert status[0] == "converged" and measure[0] <= tol
    # ||x - t|| <= ||H (x - t)|| / lambda_min(H) <= sqrt(n) tol / 1
    assert np.linalg.norm(x - target) <= np.sqrt(12) * tol
    if line_search == "armijo":  # the lockstep solver's iterates, on vectors
        x_batch, _, n_batch, _ = minimize_lbfgs(fun, np.zeros((1, 12)), tol=tol,
                                                max_iter=500)
        assert n_batch[0] == n_iter[0]
        np.testing.assert_allclose(x, x_batch, rtol=0, atol=1e-12)


def test_wolfe_steps_meet_the_strong_wolfe_conditions():
    from sklearn_layers.heads.probe._lbfgs import _wolfe_search

    direction = np.array([1.0])
    for minimum, start in [(3.0, 1.0), (0.01, 1.0), (50.0, 0.02)]:
        # phi(a) = (a - minimum)^2 along `direction` from 0
        def evaluate(step, minimum=minimum):
            return (np.array([step]), (step - minimum) ** 2,
                    np.array([2 * (step - minimum)]), 0.0)

        f, slope = minimum**2, -2 * minimum
        step = _wolfe_search(evaluate, f, slope, direction, start, 20)[0][0]
        assert (step - minimum) ** 2 <= f + 1e-4 * step * slope
        assert abs(2 * (step - minimum)) <= 0.9 * abs(slope)


@pytest.mark.parametrize("block_bytes", [8 * 4 * 7, 2**20])  # 7 rows; all rows
def test_vector_pass_is_the_two_products(monkeypatch, block_bytes):
    from sklearn_layers.heads.probe import _solver

    monkeypatch.setattr(_solver, "_VECTOR_PASS_BYTES", block_bytes)
    monkeypatch.setattr(_solver, "_PRODUCT_BLOCK", 1)
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(100, 8)).astype(np.float32)
    w = rng.normal(size=8)
    target = (rng.random(100) > 0.5).astype(np.float32)
    rows = StandardisedRows(Z, torch.device("cpu"))
    scores, product = rows.vector_pass(w, lambda part, s: np.tanh(s) - target[part])
    w32 = w.astype(np.float32)
    expected = Z.astype(np.float64) @ w32
    # float32 dot products of 8 terms: within gamma(8) of |Z| |w|
    u = np.finfo(np.float32).eps / 2
    assert (np.abs(scores - expected)
            <= 8 * u / (1 - 8 * u) * (np.abs(Z) @ np.abs(w32))).all()
    residual = np.tanh(scores) - target
    # float32 sums of 100 terms, blocked or not: within gamma(100) of the sum
    # of absolute values (plus the rounding of each residual, eps32 of it)
    bound = (100 * u / (1 - 100 * u) + 2 * u) * (np.abs(residual) @ np.abs(Z))
    assert (np.abs(product - residual @ Z.astype(np.float64)) <= bound).all()

