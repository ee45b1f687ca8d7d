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
from scipy.linalg import blas


class Diagonal:
    """Per-feature scaling ``(c * var + eps) ** -1/2``: no correlations.

    Parameters
    ----------
    variances : ndarray of shape (n_features,)
        Weighted variance of each standardised feature.
    """

    whitens = False

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


# Problems of a batch (a path's folds at one C) share one factor when their
# curvatures, and their penalties, are within this ratio of each other: any
# factor at a nearby (c, eps) leaves the Hessian about as close to the
# identity, and one factor and one triangular solve per map serve them all
# (a path's five folds at one C: one factor instead of five; in place of the
# eigendecomposition shared by all its problems before, which cost 14 ms at
# 384 features against 0.9 ms for a factor).
_SHARE_RATIO = 1.5


class Whitening:
    """The map ``W = G L^-1`` with ``L L^T = c * Sigma_s + eps * I`` per problem.

    ``Sigma_s = (1 - SHRINKAGE) * Sigma + SHRINKAGE * diag(Sigma)`` and
    ``L`` its Cholesky factor (``n_features**3 / 3``); the maps are
    triangular solves and products (``n_features**2`` per row of
    coefficients), with no explicit inverse. Problems whose curvatures, and
    penalties, are within a factor 1.5 of each other share one factor, at
    their mean curvature and penalty (a path's folds at one C). The one
    whitening of the probe, for a single fit and for a path alike.

    Parameters
    ----------
    covariance : ndarray of shape (n_features, n_features)
    """

    whitens = True

    def __init__(self, covariance):
        self.covariance = covariance
        self._diagonal = np.diag(covariance).copy()

    def at(self, curvatures, penalties):
        groups = _groups(curvatures, penalties)
        which = np.empty(len(curvatures), dtype=int)
        L = []
        for position, members in enumerate(groups):
            which[members] = position
            c, eps = curvatures[members].mean(), penalties[members].mean()
            L.append(self._factor(c, eps))
        return _Triangular(L, which)

    def _factor(self, curvature, penalty):
        d = self.covariance.shape[0]
        diagonal = curvature * SHRINKAGE * self._diagonal + penalty
        jitter = 0.0
        # A covariance accumulated in float32 can have slightly negative
        # eigenvalues; any positive definite matrix near it preconditions as well.
        for _ in range(12):
            # c * Sigma_s + eps * I (+ jitter): one pass over the matrix
            matrix = (curvature * (1.0 - SHRINKAGE)) * self.covariance
            matrix.flat[:: d + 1] += diagonal + jitter
            # the symmetric matrix's transpose is its Fortran-ordered self:
            # LAPACK factors it in place instead of copying it (1.2 MB at 384)
            L, info = scipy.linalg.lapack.dpotrf(
                matrix.T, lower=1, clean=1, overwrite_a=1
            )
            if info == 0:
                return L
            scale = curvature * float(self._diagonal.mean()) + penalty
            jitter = max(10.0 * jitter, 1e-7 * scale)
        raise FloatingPointError("could not factor the whitening matrix")


def _groups(curvatures, penalties):
    """Problems in groups whose curvatures, and penalties, are within _SHARE_RATIO.

    Greedy over the problems sorted by penalty then curvature: a path's
    problems at one C (its folds) fall in one group.
    """
    groups = []
    for p in np.lexsort((curvatures, penalties)):
        if groups:
            members = groups[-1] + [p]
            c, eps = curvatures[members], penalties[members]
            if (c.max() <= _SHARE_RATIO * c.min()
                    and eps.max() <= _SHARE_RATIO * eps.min()):
                groups[-1] = members
                continue
        groups.append([p])
    return [np.array(members) for members in groups]


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
    """``W = G @ inv(L[which[p]])`` for problem ``p``: lower triangular factors.

    `L` is a list of Fortran-ordered factors, as LAPACK returns them (BLAS
    would copy a C-ordered one on every call: 0.23 ms against 0.03 ms at
    384 features).
    """

    def __init__(self, L, which):
        self.L = L
        self.which = which
        self._members = [np.flatnonzero(which == f) for f in range(len(L))]

    def select(self, index):
        return _Triangular(self.L, self.which[index])

    # Rows A (k, d), C-ordered: A.T is the Fortran-ordered (d, k) matrix that
    # BLAS takes, and A @ inv(L) = (inv(L).T @ A.T).T one solve with L^T.
    def to_model(self, G):
        return self._apply(G, _solve, trans=1)

    def to_solver(self, W):
        return self._apply(W, _product, trans=1)

    def gradient(self, grad_W):
        # the transpose of to_model: grad_W @ inv(L).T = (inv(L) @ grad_W.T).T
        return self._apply(grad_W, _solve, trans=0)

    def _apply(self, A, operation, trans):
        A = np.ascontiguousarray(A, dtype=np.float64)
        d = A.shape[-1]
        if len(self._members[0]) == len(A):  # one factor for all
            return operation(self.L[0], A.reshape(-1, d), trans).reshape(A.shape)
        out = np.empty_like(A)
        for L, members in zip(self.L, self._members):
            if len(members):
                rows = A[members].reshape(-1, d)
                out[members] = operation(L, rows, trans).reshape(A[members].shape)
        return out


def _solve(L, rows, trans):
    """``rows @ inv(L).T`` (trans=0) or ``rows @ inv(L)`` (trans=1)."""
    if rows.shape[0] == 1:  # a vector: trsv took half of trsm's time
        return blas.dtrsv(L, rows[0], lower=1, trans=trans)[None]
    return blas.dtrsm(1.0, L, rows.T, lower=1, trans_a=trans).T


def _product(L, rows, trans):
    """``rows @ L`` (trans=1)."""
    return blas.dtrmm(1.0, L, rows.T, lower=1, trans_a=trans).T
