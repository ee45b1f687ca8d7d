"""The numerical core of RFRBoost: random features, closed-form stage steps, top models.

Everything here is plain numpy/scipy on float64 arrays, weighted by ``w``
(any positive weights; every function normalises by their sum), so that it
can be checked against a direct solution (``numpy.linalg.lstsq``) in the
tests. A stage of the residual representation ``Phi`` is

    Phi_{t+1} = standardise(Phi_t + learning_rate * a_t * F_t(Phi_t, X0) @ Delta_t)

where ``F_t`` is a layer of random ``tanh`` features of ``[Phi_t, X0]``,
``Delta_t`` the ridge solution fitting the negative functional gradient of
the loss with respect to ``Phi_t`` through the current top model, and ``a_t``
the line search along that direction (closed form for the squared error, a
few scalar Newton steps for the cross-entropy).
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.optimize import minimize
from scipy.special import log_softmax

from ._outputs import predict_proba_columns

# Regularisation of the line search: keeps ``a`` finite when the direction
# does not change the loss (as the reference implementation does).
_LINE_SEARCH_L2 = 1e-5
_NEWTON_STEPS = 8


def ridge_solve(F, G, w, alpha):
    """``B`` minimising ``sum_i w_i ||G_i - F_i B||^2 / sum(w) + alpha ||B||_F^2``.

    The normal equations ``(F' W F / sum(w) + alpha I) B = F' W G / sum(w)``
    solved by Cholesky; with ``alpha = 0`` and a singular ``F' W F`` the
    minimum-norm least-squares solution.
    """
    share = (w / w.sum()).astype(F.dtype)
    Fw = F * share[:, None]
    gram = (F.T @ Fw).astype(np.float64)
    gram.flat[:: gram.shape[0] + 1] += alpha
    rhs = (Fw.T @ G).astype(np.float64)
    try:
        B = linalg.solve(gram, rhs, assume_a="pos", check_finite=False)
    except (linalg.LinAlgError, ValueError):
        B = linalg.lstsq(gram, rhs, check_finite=False)[0]
    return B.astype(F.dtype)


# Penalties 'auto' chooses among (per unit of the weighted mean loss, on
# standardised features whose Gram matrix has a diagonal of about 1).
AUTO_ALPHAS = np.logspace(-5, 3, 17)


def ridge_solve_gcv(F, G, w, alphas=AUTO_ALPHAS):
    """:func:`ridge_solve` with the penalty chosen by generalised cross-validation.

    One eigendecomposition of ``F' W F / sum(w)`` gives the solution, the
    residual and the effective degrees of freedom ``sum s / (s + alpha)``
    for every ``alpha``; GCV is ``RSS / (1 - df / n)^2`` over the ``n``
    rows (Golub, Heath and Wahba, 1979). Returns ``(B, alpha)``.
    """
    share = (w / w.sum()).astype(F.dtype)
    Fw = F * share[:, None]
    s, V = linalg.eigh((F.T @ Fw).astype(np.float64), check_finite=False)
    s = np.clip(s, 0.0, None)
    Q = V.T @ (Fw.T @ G).astype(np.float64)  # (p, k)
    q2 = (Q * Q).sum(axis=1)
    total = float(share @ (G * G).sum(axis=1))
    n = len(F)
    best = None
    for alpha in alphas:
        inv = 1.0 / (s + alpha)
        rss = total - float(q2 @ (2 * inv - s * inv * inv))
        df = float((s * inv).sum())
        if df >= n:
            continue
        gcv = max(rss, 0.0) / (1.0 - df / n) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, alpha)
    alpha = alphas[-1] if best is None else best[1]
    return (V @ (Q / (s + alpha)[:, None])).astype(F.dtype), float(alpha)


def weighted_standardise_stats(Z, w):
    """Weighted column means and standard deviations (1 where a column is constant)."""
    share = (w / w.sum()).astype(Z.dtype)
    mean = share @ Z
    std = np.sqrt(share @ (Z - mean) ** 2)
    tiny = 1e-12 if Z.dtype == np.float64 else 1e-6
    scale = np.where(std > tiny * np.maximum(np.abs(mean), 1.0), std, 1.0)
    return mean, scale.astype(Z.dtype)


@dataclass
class RandomLayer:
    """``tanh(Phi @ weight_phi + X0 @ weight_x + bias)``; weights drawn, never trained."""

    weight_phi: np.ndarray
    weight_x: np.ndarray
    bias: np.ndarray

    @classmethod
    def draw(cls, rng, n_phi, n_x, n_out, dtype=np.float64):
        """Gaussian weights giving the representation and the input equal shares.

        With standardised inputs, each block's pre-activation has variance
        1/2 (1 for a layer on one block alone), so ``tanh`` works in its
        curved range whatever the widths.
        """
        blocks = (n_phi > 0) + (n_x > 0)
        weight_phi = rng.standard_normal((n_phi, n_out)) / np.sqrt(max(n_phi, 1) * blocks)
        weight_x = rng.standard_normal((n_x, n_out)) / np.sqrt(max(n_x, 1) * blocks)
        bias = rng.uniform(-1.0, 1.0, n_out)
        return cls(*(a.astype(dtype) for a in (weight_phi, weight_x, bias)))

    def __call__(self, Phi, X0):
        Z = X0 @ self.weight_x + self.bias
        if Phi is not None:
            Z += Phi @ self.weight_phi
        return np.tanh(Z)


# ------------------------------------------------------------- top models


@dataclass
class LinearTop:
    """``Phi @ coef + intercept``: the top model of every stage."""

    coef: np.ndarray
    intercept: np.ndarray

    def __call__(self, Phi):
        return Phi @ self.coef + self.intercept


def fit_ridge_top(Phi, Y, w, alpha):
    """Weighted ridge regression with an unpenalised intercept (``alpha=None``: GCV)."""
    share = (w / w.sum()).astype(Phi.dtype)
    Y = Y.astype(Phi.dtype)
    Phi_mean, Y_mean = share @ Phi, share @ Y
    if alpha is None:
        coef = ridge_solve_gcv(Phi - Phi_mean, Y - Y_mean, w)[0]
    else:
        coef = ridge_solve(Phi - Phi_mean, Y - Y_mean, w, alpha)
    return LinearTop(coef, Y_mean - Phi_mean @ coef)


def logistic_loss(raw, Y, w):
    """Weighted mean cross-entropy; one column is the binomial loss, more the multinomial."""
    share = w / w.sum()
    if raw.shape[1] == 1:
        z, y = raw[:, 0], Y[:, 0]
        return float(share @ (np.logaddexp(0.0, z) - y * z))
    return float(-share @ (Y * log_softmax(raw, axis=1)).sum(axis=1))


# L-BFGS iterations of the logistic top model: from zero at the first stage,
# and warm-started from the previous stage's model afterwards, where the
# representation has moved by one small step.
LOGISTIC_MAX_ITER = 100
LOGISTIC_WARM_MAX_ITER = 20


def fit_logistic_top(Phi, Y, w, alpha, start=None, max_iter=None):
    """Weighted L2-penalised logistic regression by L-BFGS (unpenalised intercept).

    Minimises ``logistic_loss + alpha / 2 * ||coef||^2``; ``start`` (a
    :class:`LinearTop`) warm-starts it, which after a small stage step
    needs few iterations.
    """
    n_phi, n_out = Phi.shape[1], Y.shape[1]
    share = w / w.sum()

    def objective(theta):
        coef = theta[: n_phi * n_out].reshape(n_phi, n_out)
        intercept = theta[n_phi * n_out:]
        raw = (Phi @ coef.astype(Phi.dtype)).astype(np.float64) + intercept
        residual = (predict_proba_columns(raw) - Y) * share[:, None]
        grad_coef = (Phi.T @ residual.astype(Phi.dtype)).astype(np.float64) + alpha * coef
        grad_intercept = residual.sum(axis=0)
        value = logistic_loss(raw, Y, w) + 0.5 * alpha * float((coef * coef).sum())
        return value, np.concatenate([grad_coef.ravel(), grad_intercept])

    if start is None:
        theta = np.zeros(n_phi * n_out + n_out)
    else:
        theta = np.concatenate([start.coef.ravel(), start.intercept]).astype(np.float64)
    if max_iter is None:
        max_iter = LOGISTIC_MAX_ITER if start is None else LOGISTIC_WARM_MAX_ITER
    result = minimize(
        objective, theta, jac=True, method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": 1e-5},
    )
    theta = result.x.astype(Phi.dtype)
    return LinearTop(theta[: n_phi * n_out].reshape(n_phi, n_out), theta[n_phi * n_out:])


# ------------------------------------------------------------ stage steps


def negative_gradient(Phi, Y, top, squared):
    """The negative functional gradient of the loss with respect to ``Phi``.

    Per row ``(Y - prediction) @ coef.T`` for both losses (squared error on
    the prediction, cross-entropy on the probabilities), scaled to unit
    root-mean-square so that the ridge penalty on ``Delta`` means the same at
    every stage; its scale is set by the line search afterwards.
    """
    raw = top(Phi)
    residual = Y - (raw if squared else predict_proba_columns(raw))
    G = (residual @ top.coef.T).astype(Phi.dtype)
    norm = np.sqrt((G * G).sum(dtype=np.float64) / len(G))
    return G / G.dtype.type(norm) if norm > 0 else G


def line_search_squared(Phi, Y, w, top, direction):
    """``a`` minimising the weighted squared error of ``top(Phi + a * direction)``.

    Closed form: ``a = <r, U>_w / (<U, U>_w + 1e-5)`` with ``r`` the
    residual, ``U = direction @ coef`` and ``<., .>_w`` the weighted mean.
    """
    share = w / w.sum()
    residual = Y - top(Phi)
    U = direction @ top.coef
    numerator = float(share @ (residual * U).sum(axis=1))
    denominator = float(share @ (U * U).sum(axis=1)) + _LINE_SEARCH_L2
    return numerator / denominator if denominator > 0 else 0.0


def line_search_logistic(Phi, Y, w, top, direction):
    """``a`` minimising the cross-entropy of ``top(Phi + a * direction)`` (+ a tiny ``a^2``).

    A scalar problem: Newton's method from ``a = 0`` with its exact first and
    second derivatives (a convex function of ``a``), halving a step that
    does not lower the objective.
    """
    share = w / w.sum()
    raw0, U = top(Phi), direction @ top.coef

    def value(a):
        return logistic_loss(raw0 + a * U, Y, w) + _LINE_SEARCH_L2 * a * a

    a, current = 0.0, value(0.0)
    for _ in range(_NEWTON_STEPS):
        P = predict_proba_columns(raw0 + a * U)
        grad = float(share @ ((P - Y) * U).sum(axis=1)) + 2 * _LINE_SEARCH_L2 * a
        if U.shape[1] == 1:
            curvature = (P * (1 - P) * U * U)[:, 0]
        else:
            mean_U = (P * U).sum(axis=1)
            curvature = (P * U * U).sum(axis=1) - mean_U * mean_U
        hess = float(share @ curvature) + 2 * _LINE_SEARCH_L2
        step = grad / hess
        for _ in range(30):
            trial = value(a - step)
            if trial <= current:
                break
            step /= 2
        else:
            break
        a, improvement = a - step, current - trial
        current = trial
        if improvement <= 1e-12 * max(abs(current), 1.0):
            break
    return a


@dataclass
class Stage:
    """One residual block: its random layer, output map and re-standardisation."""

    layer: RandomLayer
    # (n_features_per_stage, width): the step, line search and shrinkage included
    delta: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def __call__(self, Phi, X0):
        return (Phi + self.layer(Phi, X0) @ self.delta - self.mean) / self.scale


def fit_stage(rng, Phi, X0, Y, w, top, *, squared, n_features, alpha, learning_rate):
    """Draw a random layer, solve its step in closed form, return the stage and new ``Phi``.

    ``alpha`` is the ridge penalty of the step's solve, ``None`` for GCV.
    """
    layer = RandomLayer.draw(rng, Phi.shape[1], X0.shape[1], n_features, Phi.dtype)
    F = layer(Phi, X0)
    G = negative_gradient(Phi, Y, top, squared)
    delta = ridge_solve_gcv(F, G, w)[0] if alpha is None else ridge_solve(F, G, w, alpha)
    direction = F @ delta
    # Unit root-mean-square, so that the line search's tiny penalty on ``a``
    # does not bind when a strong ridge penalty made the fitted step small.
    rms = np.sqrt((direction * direction).sum(dtype=np.float64) / len(direction))
    if rms > 0:
        direction, delta = direction / Phi.dtype.type(rms), delta / Phi.dtype.type(rms)
    search = line_search_squared if squared else line_search_logistic
    factor = np.asarray(learning_rate * search(Phi, Y, w, top, direction), dtype=Phi.dtype)
    moved = Phi + factor * direction
    mean, scale = weighted_standardise_stats(moved, w)
    return Stage(layer, factor * delta, mean, scale), (moved - mean) / scale


@dataclass
class Upscale:
    """The first representation: standardised random ``tanh`` features of ``X0``."""

    layer: RandomLayer
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, rng, X0, w, width):
        layer = RandomLayer.draw(rng, 0, X0.shape[1], width, X0.dtype)
        Phi = layer(None, X0)
        mean, scale = weighted_standardise_stats(Phi, w)
        return cls(layer, mean, scale), (Phi - mean) / scale

    def __call__(self, X0):
        return (self.layer(None, X0) - self.mean) / self.scale
