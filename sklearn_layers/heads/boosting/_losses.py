"""Losses of the GrowNet estimators, on raw outputs ``F`` of shape (n, n_outputs).

Each loss gives the constant model ``init``, the per-sample loss, and the
objective a new weak learner ``f`` minimises in its stage:

- second-order losses (squared error, logistic, multinomial, Poisson) expand the
  loss around the current ``F``: ``g f + h f^2 / 2`` per output, with ``g``
  and ``h`` its first two derivatives, whose minimiser is the Newton step
  ``-g / h`` (the residual for squared error);
- piecewise-linear losses (absolute error, pinball) have no curvature, so the
  learner minimises the loss of ``F + f`` itself, whose minimiser is the
  conditional median (or quantile) of the residual, as the leaf values of
  gradient-boosted trees are for these losses.

The estimator then adds ``learning_rate * f``: the learner fits the full step,
the shrinkage scales it. Sample weights ``w`` have mean 1 over the training
rows, so a batch's weighted mean is an unbiased estimate of the full one.
"""

import numpy as np
import torch
from torch.nn import functional as nnf


def _weighted_quantile(y, w, q):
    """The smallest ``v`` with ``sum(w[y <= v]) >= q * sum(w)`` (numpy, 1-D)."""
    order = np.argsort(y, kind="stable")
    cumulative = np.cumsum(w[order])
    index = np.searchsorted(cumulative, q * cumulative[-1])
    return y[order][min(index, len(y) - 1)]


class _Loss:
    """Shared pieces: the weighted mean loss and the second-order objective."""

    second_order = True

    def loss(self, F, Y, w):
        """Weighted mean loss (``w`` has mean 1 over the training rows)."""
        return (w * self.pointwise(F, Y)).mean()

    def stage_objective(self, f, F, Y, g, h):
        """Per-sample objective of a new learner's output ``f``."""
        return (g * f + 0.5 * h * f * f).sum(dim=1)


class HalfSquaredError(_Loss):
    """``(F - y)^2 / 2``; the constant model is the weighted mean."""

    def init(self, Y, w):
        return (w[:, None] * Y).sum(dim=0) / w.sum()

    def pointwise(self, F, Y):
        return 0.5 * ((F - Y) ** 2).sum(dim=1)

    def grad_hess(self, F, Y):
        return F - Y, torch.ones_like(F)


class PinballLoss(_Loss):
    """``q (y - F)`` above the prediction, ``(1 - q) (F - y)`` below it.

    ``quantile=0.5`` is half the absolute error, so the absolute error uses it
    with a factor 2.
    """

    second_order = False

    def __init__(self, quantile, factor=1.0):
        self.quantile = quantile
        self.factor = factor

    def init(self, Y, w):
        y, weights = Y[:, 0].cpu().double().numpy(), w.cpu().double().numpy()
        value = _weighted_quantile(y, weights, self.quantile)
        return torch.tensor([value], dtype=Y.dtype, device=Y.device)

    def pointwise(self, F, Y):
        diff = Y - F
        q = self.quantile
        return self.factor * torch.maximum(q * diff, (q - 1) * diff).sum(dim=1)

    def grad_hess(self, F, Y):
        return None, None

    def stage_objective(self, f, F, Y, g, h):
        return self.pointwise(F + f, Y)


def absolute_error():
    """``|y - F|``: twice the pinball loss at the median."""
    return PinballLoss(0.5, factor=2.0)


class HalfPoissonLoss(_Loss):
    """``exp(F) - y F`` with the log link: the prediction is ``exp(F)``."""

    def init(self, Y, w):
        mean = (w[:, None] * Y).sum(dim=0) / w.sum()
        return torch.log(mean)

    def pointwise(self, F, Y):
        return (torch.exp(F) - Y * F).sum(dim=1)

    def grad_hess(self, F, Y):
        mu = torch.exp(F)
        return mu - Y, mu


class HalfBinomialLoss(_Loss):
    """Logistic loss on one logit; targets in {0, 1}, shape (n, 1)."""

    def init(self, Y, w):
        p = ((w[:, None] * Y).sum(dim=0) / w.sum()).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p))

    def pointwise(self, F, Y):
        return nnf.binary_cross_entropy_with_logits(F, Y, reduction="none").sum(dim=1)

    def grad_hess(self, F, Y):
        p = torch.sigmoid(F)
        return p - Y, p * (1 - p)


class HalfMultinomialLoss(_Loss):
    """Softmax cross-entropy on one logit per class; ``Y`` one-hot.

    The stage objective uses the diagonal of the softmax Hessian,
    ``p_k (1 - p_k)``, as multiclass gradient boosting does.
    """

    def init(self, Y, w):
        frequencies = (w[:, None] * Y).sum(dim=0) / w.sum()
        log_p = torch.log(frequencies.clamp_min(1e-6))
        return log_p - log_p.mean()

    def pointwise(self, F, Y):
        return -(Y * nnf.log_softmax(F, dim=1)).sum(dim=1)

    def grad_hess(self, F, Y):
        p = torch.softmax(F, dim=1)
        return p - Y, p * (1 - p)
