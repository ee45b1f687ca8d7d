"""Weighted layer fusion: a softmax weight per layer and a linear head, fitted jointly.

The model of the SUPERB protocol: every layer's features (standardised, of one
common width ``k``) are mixed as ``m = sum_l softmax(a)_l z_l`` and a logistic
head reads ``m``: multinomial (``logits = m W^T + b``) for three classes or
more, binomial (one logit ``m w + b``) for two, as scikit-learn's
``LogisticRegression`` does. ``a``, ``W`` and ``b`` are fitted together, full
batch, by the probe's L-BFGS (``heads/probe/_lbfgs.py``) on the mean log-loss
plus ``||W||^2 / (2 C n)`` -- the penalty of ``LogisticRegression(C=C)`` on
``n`` rows; neither ``a`` nor ``b`` is penalised. With one layer the model is
exactly that logistic regression on the standardised features. The fitted
state is numpy arrays.

Works on precomputed per-layer features only: no network code here.
"""

import warnings

import numpy as np
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from .probe._lbfgs import minimize_lbfgs

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


class _LayerMix:
    """Objective and gradient of the weighted fusion, on flat parameter vectors.

    Parameters are ``[a (n_layers), W (n_outputs x width), b (n_outputs)]``,
    ``n_outputs`` being 1 for two classes and ``n_classes`` otherwise.
    """

    def __init__(self, Z, codes, n_classes, C):
        self.Z = Z
        self.n_layers, self.n, self.width = Z.shape
        self.binary = n_classes == 2
        self.n_outputs = 1 if self.binary else n_classes
        if self.binary:
            self.target = codes.astype(np.float64)[:, None]
        else:
            self.target = np.zeros((self.n, n_classes))
            self.target[np.arange(self.n), codes] = 1.0
        self.penalty = 1.0 / (C * self.n)

    @property
    def size(self):
        return self.n_layers + self.n_outputs * (self.width + 1)

    def unpack(self, x):
        L, K, k = self.n_layers, self.n_outputs, self.width
        return x[:L], x[L : L + K * k].reshape(K, k), x[L + K * k :]

    def __call__(self, x):
        a, W, b = self.unpack(x)
        weights = softmax(a)
        mixed = np.tensordot(weights, self.Z, axes=1)
        logits = mixed @ W.T + b
        if self.binary:
            loss = -np.mean(self.target * log_expit(logits)
                            + (1 - self.target) * log_expit(-logits))
            residual = (expit(logits) - self.target) / self.n
        else:
            log_p = log_softmax(logits, axis=1)
            loss = -np.sum(self.target * log_p) / self.n
            residual = (np.exp(log_p) - self.target) / self.n
        loss += 0.5 * self.penalty * float(np.sum(W * W))
        grad_W = residual.T @ mixed + self.penalty * W
        grad_b = residual.sum(axis=0)
        grad_weights = np.einsum("lnk,nk->l", self.Z, residual @ W)
        grad_a = weights * (grad_weights - weights @ grad_weights)
        return float(loss), np.concatenate([grad_a, grad_W.ravel(), grad_b])


def fit_layer_mix(Z, y, n_classes, *, C, max_iter, tol, random_state):
    """Fit the layer weights and the logistic head jointly (full-batch L-BFGS).

    Parameters
    ----------
    Z : ndarray of shape (n_layers, n_samples, width)
        Standardised layers of equal width.
    y : ndarray of shape (n_samples,)
        Class codes ``0 .. n_classes - 1``.
    n_classes : int
    C : float
        Inverse of the L2 penalty strength of the head, as in
        ``LogisticRegression(C=C)``.
    max_iter : int
        L-BFGS iterations.
    tol : float
        Stop when every partial derivative is at most ``tol`` in absolute value
        (or when a step no longer lowers the objective beyond rounding).
    random_state : RandomState
        Draws the head's initial weights.

    Returns
    -------
    params : dict
        ``layer_weights`` (n_layers,), ``coef`` (n_outputs, width),
        ``intercept`` (n_outputs,) as numpy arrays, and ``n_iter``;
        ``n_outputs`` is 1 for two classes.
    """
    mix = _LayerMix(np.asarray(Z, dtype=np.float64), np.asarray(y), n_classes, C)
    x0 = np.zeros(mix.size)
    _, W0, _ = mix.unpack(x0)
    W0[...] = random_state.standard_normal(W0.shape) * (_INIT_SCALE / np.sqrt(mix.width))

    def fun(x, index):
        values, gradients = zip(*(mix(row) for row in x))
        gradients = np.array(gradients)
        return np.array(values), gradients, np.abs(gradients).max(axis=1)

    x, measure, n_iter, status = minimize_lbfgs(fun, x0[None, :], tol=tol,
                                                max_iter=max_iter, history=20)
    # "stalled" and "no_progress": rounding noise, not the budget, stopped it
    # (scipy counts the first as convergence, as the probe does)
    if status[0] == "max_iter":
        warnings.warn(
            f"The weighted layer fusion did not converge: L-BFGS stopped after "
            f"{int(n_iter[0])} iterations (max_iter={max_iter}) with a largest gradient "
            f"of {measure[0]:.2g} > tol={tol:g}. Increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=3,
        )
    a, W, b = mix.unpack(x[0])
    return {"layer_weights": softmax(a), "coef": W.copy(), "intercept": b.copy(),
            "n_iter": int(n_iter[0])}


def mix_logits(Z, params):
    """Logits of the fitted mix for stacked layers ``Z``.

    Parameters
    ----------
    Z : ndarray of shape (n_layers, n_samples, width)
    params : dict
        What :func:`fit_layer_mix` returned.

    Returns
    -------
    logits : ndarray of shape (n_samples, n_outputs)
        One column (the logit of the second class) for two classes.
    """
    mixed = np.tensordot(params["layer_weights"], Z, axes=1)
    return mixed @ params["coef"].T + params["intercept"]
