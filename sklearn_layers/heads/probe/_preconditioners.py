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
import scipy.linalg
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


# From this many problems on, one eigendecomposition (about 9 times the
# cost of a Cholesky factor and its inverse) is cheaper than a factor each.
_EIGEN_MIN_PROBLEMS = 6


class Whitening:
    """The map ``W = G M`` with ``M M^T = (c * Sigma_s + eps * I)^-1`` per problem.

    ``Sigma_s = (1 - SHRINKAGE) * Sigma + SHRINKAGE * diag(Sigma)``. The one
    whitening of the probe, for a single fit and for a path alike. ``M`` is
    an inverse Cholesky factor for a few problems (``n_features**3 / 3``
    each) and the symmetric root from one eigendecomposition of ``Sigma_s``
    shared by many (a path's folds and values of C). The two roots differ by
    a rotation, and L-BFGS started from a multiple of the identity is
    invariant under rotations of its variables: the choice changes the
    time, not the iterates (up to rounding).

    Parameters
    ----------
    covariance : ndarray of shape (n_features, n_features)
    n_problems : int, default=1
        How many problems the family will serve in all.
    """

    def __init__(self, covariance, n_problems=1):
        self.covariance = covariance
        self._shrunk = (1.0 - SHRINKAGE) * covariance
        self._shrunk.flat[:: covariance.shape[0] + 1] += SHRINKAGE * np.diag(covariance)
        self._shared = n_problems >= _EIGEN_MIN_PROBLEMS
        self._eigen = None

    def at(self, curvatures, penalties):
        if self._shared:
            if self._eigen is None:
                eigenvalues, vectors = scipy.linalg.eigh(self._shrunk, check_finite=False)
                self._eigen = np.maximum(eigenvalues, 0.0), vectors
            eigenvalues, vectors = self._eigen
            scale = curvatures[:, None] * eigenvalues + penalties[:, None]
            return _Rotation(vectors, 1.0 / np.sqrt(scale))
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
        return _per_problem(G, self.L_inv)

    def to_solver(self, W):
        return _per_problem(W, self.L)

    def gradient(self, grad_W):
        return _per_problem(grad_W, np.swapaxes(self.L_inv, 1, 2))


class _Rotation:
    """``W = (G * scale) @ V.T``: one shared ``V``, one ``scale`` per problem."""

    def __init__(self, V, scale):
        self.V = V
        self.scale = scale[:, None, :]

    def select(self, index):
        return _Rotation(self.V, self.scale[index, 0])

    def to_model(self, G):
        return _shared(G * self.scale, self.V.T)

    def to_solver(self, W):
        return _shared(W, self.V) / self.scale

    def gradient(self, grad_W):
        return _shared(grad_W, self.V) * self.scale


def _per_problem(A, B):
    """``A[p] @ B[p]`` for each problem, one BLAS product each.

    numpy's stacked matmul of (n_problems, k, d) by (n_problems, d, d) did
    not reach BLAS here (3.7 ms against 0.1 ms for d = 384).
    """
    return np.stack([a @ b for a, b in zip(A, B)])


def _shared(A, B):
    """``A[p] @ B`` for every problem, as one (n_problems * k, d) product."""
    n_problems, k, d = A.shape
    return (A.reshape(-1, d) @ B).reshape(n_problems, k, B.shape[1])
