"""Changes of variables that make a probe's Hessian close to the identity.

The Hessian of the probe's objective with respect to one row ``w`` of the
coefficients is about ``c * Sigma + eps * I``: ``Sigma`` the weighted
covariance of the standardised features, ``c`` the mean curvature
``p (1 - p)`` of the loss, ``eps = 1 / (C * sum(weights))`` the penalty's.
Each family below turns the ``(c, eps)`` of a batch of problems into maps
``W = to_model(G)`` (``G`` and ``W`` of shape ``(n_problems, n_outputs,
n_features)``) under which that matrix becomes (close to) the identity. The
solver works on ``G``; the minimiser in ``W`` does not depend on the map.
"""

import numpy as np
import scipy.linalg.lapack


class Diagonal:
    """Per-feature scaling ``(c * var + eps) ** -1/2``: no correlations.

    Parameters
    ----------
    variances : ndarray of shape (n_features,)
        Weighted variance of each standardised feature.
    """

    def __init__(self, variances):
        self.variances = variances

    def at(self, curvatures, penalties):
        scale = curvatures[:, None] * self.variances + penalties[:, None]
        return _Scaling(1.0 / np.sqrt(scale))


# Whitening uses (1 - s) Sigma + s diag(Sigma): with s = 0.3 the iterations
# to tol=1e-4 fell on every benchmarked layer against s = 0 (200 x 384 tweets:
# 24 -> 14; 2,729 x 384: 29 -> 23; digits CNN 1,797 x 256: 33 -> 26) but one
# (correlated 8,000 x 512: 31 -> 33). Full whitening fits the curvature at the
# start; as the fit separates the classes the curvature moves away from it,
# and a partly whitened map stays closer to the later Hessians.
SHRINKAGE = 0.3


class Whitening:
    """Whitening by a Cholesky factor of ``c * Sigma_s + eps * I`` per problem.

    ``Sigma_s = (1 - SHRINKAGE) * Sigma + SHRINKAGE * diag(Sigma)``.

    The one whitening of the probe, for a single fit and for a path alike:
    ``n_features**3 / 3`` per problem and call to :meth:`at` (an
    eigendecomposition, shared by all problems, costs about 9 times one
    factor, more than the handful of problems a fit or a fold's values of C
    bring).

    Parameters
    ----------
    covariance : ndarray of shape (n_features, n_features)
    """

    def __init__(self, covariance):
        self.covariance = covariance
        self._shrunk = (1.0 - SHRINKAGE) * covariance
        self._shrunk.flat[:: covariance.shape[0] + 1] += SHRINKAGE * np.diag(covariance)

    def at(self, curvatures, penalties):
        factors = [self._factor(c, eps) for c, eps in zip(curvatures, penalties)]
        L, L_inv = (np.stack(parts) for parts in zip(*factors))
        return _Triangular(L, L_inv)

    def _factor(self, curvature, penalty):
        d = self.covariance.shape[0]
        matrix = curvature * self._shrunk
        matrix.flat[:: d + 1] += penalty
        jitter = 0.0
        # A covariance accumulated in float32 can have slightly negative
        # eigenvalues; any positive definite matrix near it preconditions as well.
        for _ in range(12):
            L, info = scipy.linalg.lapack.dpotrf(matrix, lower=1, clean=1)
            if info == 0:
                L_inv, _ = scipy.linalg.lapack.dtrtri(L, lower=1)
                return L, L_inv
            jitter = max(10.0 * jitter, 1e-7 * float(matrix.diagonal().mean()))
            matrix.flat[:: d + 1] += jitter
        raise FloatingPointError("could not factor the whitening matrix")


class _Scaling:
    """``W = G * t``, one ``t`` of shape (n_features,) per problem."""

    def __init__(self, t):
        self.t = t[:, None, :]

    def select(self, index):
        return _Scaling(self.t[index, 0])

    def to_model(self, G):
        return G * self.t

    def to_solver(self, W):
        return W / self.t

    def gradient(self, grad_W):
        return grad_W * self.t


class _Triangular:
    """``W = G @ inv(L)``, one lower triangular ``L`` per problem."""

    def __init__(self, L, L_inv):
        self.L = L
        self.L_inv = L_inv

    def select(self, index):
        return _Triangular(self.L[index], self.L_inv[index])

    def to_model(self, G):
        return G @ self.L_inv

    def to_solver(self, W):
        return W @ self.L

    def gradient(self, grad_W):
        return grad_W @ np.swapaxes(self.L_inv, 1, 2)
