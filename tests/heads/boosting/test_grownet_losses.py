"""GrowNet's losses against scikit-learn's metrics, autograd and closed forms."""

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax
from sklearn.metrics import (
    log_loss,
    mean_absolute_error,
    mean_pinball_loss,
    mean_poisson_deviance,
    mean_squared_error,
)

from sklearn_layers.heads.boosting._losses import (
    HalfBinomialLoss,
    HalfMultinomialLoss,
    HalfPoissonLoss,
    HalfSquaredError,
    PinballLoss,
    absolute_error,
)

rng = np.random.default_rng(0)
N = 200
F1 = rng.normal(size=(N, 1))
F3 = rng.normal(size=(N, 3))
Y_REAL = rng.normal(size=(N, 1)) * 2 + 1
Y_COUNT = rng.poisson(3.0, size=(N, 1)).astype(float)
CODES = rng.integers(0, 3, size=N)
W = rng.uniform(0.5, 2.0, size=N)
W = W / W.mean()


def t(a):
    return torch.as_tensor(a, dtype=torch.float64)


CASES = {
    "squared": (HalfSquaredError(), F1, Y_REAL),
    "absolute": (absolute_error(), F1, Y_REAL),
    "pinball": (PinballLoss(0.8), F1, Y_REAL),
    "poisson": (HalfPoissonLoss(), F1, Y_COUNT),
    "binomial": (HalfBinomialLoss(), F1, (CODES[:, None] > 0).astype(float)),
    "multinomial": (HalfMultinomialLoss(), F3, np.eye(3)[CODES]),
}


def reference(name, F, Y, w):
    """The weighted mean loss from scikit-learn's metrics."""
    if name == "squared":
        return 0.5 * mean_squared_error(Y, F, sample_weight=w)
    if name == "absolute":
        return mean_absolute_error(Y, F, sample_weight=w)
    if name == "pinball":
        return mean_pinball_loss(Y, F, alpha=0.8, sample_weight=w)
    if name == "poisson":  # exp(F) - y F = deviance / 2 minus a term free of F
        y = Y[:, 0]
        free = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0) - y
        deviance = mean_poisson_deviance(y, np.exp(F[:, 0]), sample_weight=w)
        return 0.5 * deviance - np.average(free, weights=w)
    if name == "binomial":
        p = expit(F[:, 0])
        return log_loss(Y[:, 0], np.column_stack([1 - p, p]), sample_weight=w)
    return log_loss(Y.argmax(axis=1), softmax(F, axis=1), sample_weight=w)


@pytest.mark.parametrize("name", CASES)
def test_weighted_loss_matches_scikit_learn_metrics(name):
    loss, F, Y = CASES[name]
    value = float(loss.loss(t(F), t(Y), t(W)))
    np.testing.assert_allclose(value, reference(name, F, Y, W), rtol=1e-10)


@pytest.mark.parametrize("name", ["squared", "poisson", "binomial", "multinomial"])
def test_gradient_and_hessian_diagonal_match_autograd(name):
    loss, F, Y = CASES[name]
    F = t(F).requires_grad_(True)
    (g_auto,) = torch.autograd.grad(loss.pointwise(F, t(Y)).sum(), F, create_graph=True)
    h_auto = torch.stack(
        [
            torch.autograd.grad(g_auto[:, k].sum(), F, retain_graph=True)[0][:, k]
            for k in range(F.shape[1])
        ],
        dim=1,
    )
    g, h = loss.grad_hess(F.detach(), t(Y))
    np.testing.assert_allclose(g.numpy(), g_auto.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h.numpy(), h_auto.detach().numpy(), rtol=1e-10, atol=1e-12)


def _weighted_median(values, weights, q):
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order]) / weights.sum()
    return values[order][np.searchsorted(cumulative, q)]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("squared", lambda Y: [np.average(Y[:, 0], weights=W)]),
        ("absolute", lambda Y: [_weighted_median(Y[:, 0], W, 0.5)]),
        ("pinball", lambda Y: [_weighted_median(Y[:, 0], W, 0.8)]),
        ("poisson", lambda Y: [np.log(np.average(Y[:, 0], weights=W))]),
        ("binomial", lambda Y: [np.log(np.average(Y[:, 0], weights=W) / (1 - np.average(Y[:, 0], weights=W)))]),
    ],
)
def test_constant_model_is_the_weighted_minimiser(name, expected):
    loss, _, Y = CASES[name]
    c0 = loss.init(t(Y), t(W)).numpy()
    np.testing.assert_allclose(c0, expected(Y), rtol=1e-10)
    at = float(loss.loss(t(np.tile(c0, (N, 1))), t(Y), t(W)))
    for delta in (-1e-3, 1e-3):  # no nearby constant does better
        assert at <= float(loss.loss(t(np.tile(c0 + delta, (N, 1))), t(Y), t(W))) + 1e-12


def test_multinomial_constant_model_is_the_log_frequencies():
    loss, _, Y = CASES["multinomial"]
    c0 = loss.init(t(Y), t(W)).numpy()
    frequencies = np.array([W[CODES == k].sum() for k in range(3)]) / W.sum()
    np.testing.assert_allclose(softmax(c0), frequencies, rtol=1e-10)


def test_squared_error_newton_step_is_the_residual():
    loss, F, Y = CASES["squared"]
    g, h = loss.grad_hess(t(F), t(Y))
    np.testing.assert_allclose((-g / h).numpy(), Y - F)


def test_piecewise_linear_losses_fit_the_loss_itself():
    # No curvature: the stage objective is the loss of F + f.
    loss, F, Y = CASES["pinball"]
    f = rng.normal(size=(N, 1))
    value = loss.stage_objective(t(f), t(F), t(Y), None, None)
    np.testing.assert_allclose(value.numpy(), loss.pointwise(t(F + f), t(Y)).numpy())
    assert not loss.second_order and HalfSquaredError().second_order
