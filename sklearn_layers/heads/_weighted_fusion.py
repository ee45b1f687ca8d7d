"""Weighted layer fusion: a softmax weight per layer and a linear head, fitted jointly.

The model of the SUPERB protocol: every layer's features (standardised, of one
common width ``k``) are mixed as ``m = sum_l softmax(a)_l z_l`` and a
multinomial logistic head reads ``logits = m W^T + b``. ``a``, ``W`` and ``b``
are fitted together, full batch, by L-BFGS on the mean cross-entropy plus
``alpha / 2 * ||W||^2`` (neither the layer logits ``a`` nor ``b`` are
penalised). The fitted state is numpy arrays; prediction needs no torch.

Works on precomputed per-layer features only: no network code here.
"""

import warnings

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as nnf

_INIT_SCALE = 0.01  # the head starts near zero: every layer weight starts equal


class EqualWidthLayers:
    """Standardise each layer and bring all layers to one width.

    Each layer's features are standardised (``StandardScaler``). If the layers
    have one width and ``n_components`` is ``None``, that is all. Otherwise each
    layer is projected on its first ``k`` principal components (fitted on the
    training rows), ``k = n_components`` or the narrowest layer's width, and
    rescaled so that its ``k`` features have a mean variance of 1.

    Parameters
    ----------
    n_components : int or None
        The common width; ``None`` for the narrowest layer's width.
    """

    def __init__(self, n_components=None):
        self.n_components = n_components

    def fit(self, blocks):
        """Fit the per-layer standardisation (and projection) on ``blocks``.

        Parameters
        ----------
        blocks : list of ndarray of shape (n_samples, n_features_l)
            One matrix per layer, the same rows.

        Returns
        -------
        self : EqualWidthLayers
        """
        widths = [b.shape[1] for b in blocks]
        n_samples = blocks[0].shape[0]
        project = self.n_components is not None or len(set(widths)) > 1
        width = min(widths) if self.n_components is None else self.n_components
        if width > min(widths):
            raise ValueError(
                f"n_components={width} is wider than the narrowest layer "
                f"({min(widths)} features; widths {widths}). Pass at most {min(widths)}."
            )
        self.width_ = min(width, n_samples) if project else width
        self.steps_ = []
        for block in blocks:
            scaler = StandardScaler().fit(block)
            pca = scale = None
            if project:
                pca = PCA(n_components=self.width_, svd_solver="full")
                pca.fit(scaler.transform(block))
                variance = float(np.mean(pca.explained_variance_))
                scale = 1.0 / np.sqrt(variance) if variance > 0 else 1.0
            self.steps_.append((scaler, pca, scale))
        return self

    def transform(self, blocks):
        """The layers, standardised and of equal width, stacked.

        Parameters
        ----------
        blocks : list of ndarray of shape (n_samples, n_features_l)

        Returns
        -------
        Z : ndarray of shape (n_layers, n_samples, width_), float64
        """
        out = []
        for block, (scaler, pca, scale) in zip(blocks, self.steps_):
            z = scaler.transform(np.asarray(block, dtype=np.float64))
            if pca is not None:
                z = pca.transform(z) * scale
            out.append(z)
        return np.stack(out)


class SoftmaxLayerMix(nn.Module):
    """``logits = (sum_l softmax(a)_l Z_l) W^T + b`` for ``Z`` of shape ``(L, n, k)``."""

    def __init__(self, n_layers, width, n_classes):
        super().__init__()
        self.layer_logits = nn.Parameter(torch.zeros(n_layers, dtype=torch.float64))
        self.linear = nn.Linear(width, n_classes, dtype=torch.float64)

    def forward(self, Z):
        weights = torch.softmax(self.layer_logits, dim=0)
        return self.linear(torch.einsum("l,lnk->nk", weights, Z))


def fit_layer_mix(Z, y, n_classes, *, alpha, max_iter, tol, generator):
    """Fit the layer weights and the linear head jointly (full-batch L-BFGS).

    Parameters
    ----------
    Z : ndarray of shape (n_layers, n_samples, width)
        Standardised layers of equal width.
    y : ndarray of shape (n_samples,)
        Class codes ``0 .. n_classes - 1``.
    n_classes : int
    alpha : float
        L2 penalty of the head's weights.
    max_iter : int
        L-BFGS iterations.
    tol : float
        Stop when every partial derivative is at most ``tol`` in absolute value.
    generator : torch.Generator
        Draws the head's initial weights.

    Returns
    -------
    params : dict
        ``layer_weights`` (n_layers,), ``coef`` (n_classes, width),
        ``intercept`` (n_classes,) as numpy arrays, and ``n_iter``.
    """
    n_layers, _, width = Z.shape
    Z = torch.as_tensor(Z, dtype=torch.float64)
    target = torch.as_tensor(y, dtype=torch.long)
    mix = SoftmaxLayerMix(n_layers, width, n_classes)
    with torch.no_grad():
        init = torch.randn(mix.linear.weight.shape, generator=generator, dtype=torch.float64)
        mix.linear.weight.copy_(init * (_INIT_SCALE / np.sqrt(width)))
        mix.linear.bias.zero_()
    optimizer = torch.optim.LBFGS(
        mix.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=tol,
        # near the optimum a step lowers the loss by about gradient^2 / curvature
        tolerance_change=tol**2, history_size=20, line_search_fn="strong_wolfe",
    )

    def objective():
        optimizer.zero_grad()
        loss = nnf.cross_entropy(mix(Z), target)
        loss = loss + 0.5 * alpha * mix.linear.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
        objective()
    n_iter = int(optimizer.state[mix.layer_logits].get("n_iter", 0))
    gradient = max(float(p.grad.abs().max()) for p in mix.parameters())
    if gradient > tol:
        warnings.warn(
            f"The weighted layer fusion did not converge: L-BFGS stopped after "
            f"{n_iter} iterations (max_iter={max_iter}) with a largest gradient of "
            f"{gradient:.2g} > tol={tol:g}. Increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    with torch.no_grad():
        return {
            "layer_weights": torch.softmax(mix.layer_logits, 0).numpy().copy(),
            "coef": mix.linear.weight.numpy().copy(),
            "intercept": mix.linear.bias.numpy().copy(),
            "n_iter": n_iter,
        }


def mix_logits(Z, params):
    """Logits of the fitted mix for stacked layers ``Z`` (numpy, no torch).

    Parameters
    ----------
    Z : ndarray of shape (n_layers, n_samples, width)
    params : dict
        What :func:`fit_layer_mix` returned.

    Returns
    -------
    logits : ndarray of shape (n_samples, n_classes)
    """
    mixed = np.tensordot(params["layer_weights"], Z, axes=1)
    return mixed @ params["coef"].T + params["intercept"]
