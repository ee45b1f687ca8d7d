"""L2-penalised logistic regression on standardised features: data and solver.

The objective is scikit-learn's ``LogisticRegression`` objective written as
its lbfgs solver writes it (mean weighted loss, penalty divided by
``C * sum(weights)``), on the standardised features ``Z = (X - mean) / scale``::

    f(W, b) = sum_i w_i loss(y_i, Z_i @ W.T + b) / S + ||W||^2 / (2 C S),  S = sum_i w_i

A batch of such problems (folds, values of ``C``) can share one standardised
copy of the rows: problem ``k``'s own standardisation is folded into its
coefficients, so one matrix product serves them all. L-BFGS runs on
preconditioned variables (``_preconditioners``): a change of variables that
leaves the minimiser where it is and makes the Hessian close to the
identity, which is what a first-order method needs on correlated,
anisotropic features.
"""

import numpy as np
import torch

from ...utils._chunks import chunk_n_rows
from ._lbfgs import minimize_lbfgs, minimize_one

# Bytes per feature of a row chunk's float64 temporaries.
_ROW_CHUNK_FACTOR = 2 * 8
# Rows whose squared deviations are summed in the features' dtype.
_SQUARES_BLOCK = 256
# Rows per block of the products with a few columns (StandardisedRows._in_blocks).
_PRODUCT_BLOCK = 64
# Bytes of rows per block of StandardisedRows.vector_pass: within a 2 MiB L2
# (1,024 rows of 384 float32 features; 512 measured the same).
_VECTOR_PASS_BYTES = 3 * 2**19


def moments(X, weights, *, scale, working_memory=None):
    """Weighted mean and scale of the columns of X, as StandardScaler has them.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    weights : ndarray of shape (n_samples,), float64, non-negative
        Rows of weight 0 do not count (a subset of rows is a 0/1 weighting).
    scale : bool
        Whether the features are to be scaled (else the scale is 1).
    working_memory : float or None
        MiB for the float64 row chunks (None: scikit-learn's setting).

    Returns
    -------
    mean : ndarray of shape (n_features,), float64
    scale_ : ndarray of shape (n_features,), float64
        The weighted standard deviation (``ddof=0``), 1 for the features
        that :class:`~sklearn.preprocessing.StandardScaler` also treats as
        constant; all ones when ``scale=False``.
    variances : ndarray of shape (n_features,), float64
        Weighted variance of each feature after scaling.
    """
    n, d = X.shape
    total = weights.sum()
    uniform = bool((weights == weights[0]).all())
    rows = chunk_n_rows(_ROW_CHUNK_FACTOR * d, working_memory)
    chunks = [slice(start, start + rows) for start in range(0, n, rows)]
    if uniform:
        mean = X.sum(axis=0, dtype=np.float64) / n
    else:
        mean = sum(weights[part] @ X[part].astype(np.float64) for part in chunks)
        mean /= total
    shift = mean.astype(X.dtype)
    var = np.zeros(d)
    if uniform:
        # squares summed in X's dtype over blocks of _SQUARES_BLOCK rows and
        # the blocks in float64: within gamma(_SQUARES_BLOCK) (1.5e-5 for
        # float32) of the float64 sum of the same squares, in 0.4 ms where
        # converting the deviations to float64 took 2.6 ms (2,729 x 384),
        # provided the squares do not underflow (below)
        for start in range(0, n, _SQUARES_BLOCK):
            deviations = X[start : start + _SQUARES_BLOCK] - shift
            var += np.einsum("ij,ij->j", deviations, deviations)
    else:
        for part in chunks:
            var += weights[part] @ np.square(X[part] - shift)
    # Squares below the dtype's smallest normal number lose their digits
    # (MiniLM's last layer has features of size 1e-32, whose squares
    # underflow float32): where the mean square is under tiny / eps, the
    # squares of those columns are taken in float64.
    info = np.finfo(X.dtype)
    floor = (n if uniform else total) * (float(info.tiny) / float(info.eps))
    faint = np.flatnonzero(var < floor)
    if faint.size:
        squares = np.square((X[:, faint] - shift[faint]).astype(np.float64))
        var[faint] = squares.sum(axis=0) if uniform else weights @ squares
    var /= total if not uniform else n
    if not scale:
        return mean, np.ones(d), var
    # StandardScaler's rule (sklearn.preprocessing._data._is_constant_feature):
    # a variance within rounding of zero means a constant feature, scaled by 1.
    eps = np.finfo(np.float64).eps
    constant = var <= total * eps * var + (total * mean * eps) ** 2
    scale_ = np.where(constant, 1.0, np.sqrt(var))
    return mean, scale_, var / scale_**2


def moments_of_each(X, weights, *, centre, scale, working_memory=None):
    """:func:`moments` under each column of `weights`, in one pass over X.

    For the folds of a path: one float64 conversion of each row chunk serves
    every column (two products with the weights' columns), where a call to
    :func:`moments` per column converts every row once per column and pass.
    The moments are taken around `centre` (the mean of all rows) and
    recentred (``E[(x - c)^2] - (m - c)^2``), within rounding of
    :func:`moments` where a column's variance is not far below its second
    moment about the centre; the features where it is (constant in that
    column's rows, or nearly so) are taken again by :func:`moments`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    weights : ndarray of shape (n_samples, n_columns), float64, non-negative
    centre : ndarray of shape (n_features,), float64
    scale : bool
    working_memory : float or None

    Returns
    -------
    means, scales, variances : ndarray of shape (n_columns, n_features)
        As :func:`moments` returns them, one row per column.
    """
    n, d = X.shape
    totals = weights.sum(axis=0)
    rows = chunk_n_rows(_ROW_CHUNK_FACTOR * d, working_memory)
    chunks = [slice(start, start + rows) for start in range(0, n, rows)]
    sums = np.zeros((weights.shape[1], d))
    squares = np.zeros_like(sums)
    for part in chunks:
        deviations = X[part].astype(np.float64) - centre
        sums += weights[part].T @ deviations
        squares += weights[part].T @ np.square(deviations)
    shifts = sums / totals[:, None]
    means = centre + shifts
    second = squares / totals[:, None]  # about the centre
    var = np.maximum(second - np.square(shifts), 0.0)
    # Recentring loses the digits of a variance far below the second moment
    # about the centre (its rounding error is within n * eps of that moment):
    # a feature constant in one column's rows but not in all (a pixel that is 0
    # in every training row of a fold) came out at 1e-21 instead of 0, and was
    # scaled by 1e-11. Such columns are taken again, two-pass, by moments().
    for k in range(second.shape[0]):
        lost = np.flatnonzero(var[k] <= 1e3 * n * np.finfo(np.float64).eps * second[k])
        if lost.size:
            mean, scale_, normalised = moments(X[:, lost], weights[:, k], scale=scale,
                                               working_memory=working_memory)
            means[k, lost], var[k, lost] = mean, normalised * scale_**2
    if not scale:
        return means, np.ones_like(means), var
    eps = np.finfo(np.float64).eps
    total = totals[:, None]
    constant = var <= total * eps * var + (total * means * eps) ** 2
    scales = np.where(constant, 1.0, np.sqrt(var))
    return means, scales, var / scales**2


def standardize(X, mean, scale_):
    """``(X - mean) / scale_`` as a new array in the dtype of X."""
    Z = X - mean.astype(X.dtype)
    Z *= (1.0 / scale_).astype(Z.dtype)
    return Z


class StandardisedRows:
    """Standardised training rows where the products with them run.

    On the CPU the rows stay a numpy array and the products go through
    numpy's BLAS. On another device (``"cuda"``...) they are a torch tensor
    there and only the two products per evaluation move to it; the
    elementwise work on the ``(n_samples, n_outputs)`` scores stays in numpy.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, n_features)
        Standardised rows, float32 or float64.
    device : torch.device
    """

    def __init__(self, Z, device):
        # numpy rather than torch on the CPU: for a tall matrix times a few
        # columns (2,729 x 384 times 1 to 10; 20,000 x 512 times 10) numpy's
        # OpenBLAS took 0.6-0.8x the time of torch 2.13's CPU matmul on the
        # 2-core AMD EPYC machines of this project, one thread each.
        self.shape = Z.shape
        self.dtype = Z.dtype
        self._on_cpu = device.type == "cpu"
        self._blocks = [slice(start, start + _PRODUCT_BLOCK)
                        for start in range(0, Z.shape[0], _PRODUCT_BLOCK)]
        self._Z = Z if self._on_cpu else torch.from_numpy(Z).to(device)

    def scores(self, W):
        """``Z @ W.T`` in the dtype of Z, as a numpy array."""
        W = W.astype(self.dtype, copy=False)
        if not self._on_cpu:
            return _to_numpy(self._Z @ self._to_device(W).T)
        if W.shape[0] == 1:  # a matrix-vector product: 3x faster than (d, 1)
            return (self._Z @ W[0])[:, None]
        if self._in_blocks(W.shape[0]):
            out = np.empty((self.shape[0], W.shape[0]), dtype=self.dtype)
            for rows in self._blocks:
                np.matmul(self._Z[rows], W.T, out=out[rows])
            return out
        return self._Z @ W.T

    def transposed_product(self, R):
        """``R.T @ Z`` in the dtype of Z, as a numpy array."""
        R = R.astype(self.dtype, copy=False)
        if not self._on_cpu:
            return _to_numpy(self._to_device(R).T @ self._Z)
        if R.shape[1] == 1:
            return (R[:, 0] @ self._Z)[None, :]
        if self._in_blocks(R.shape[1]):
            out = np.zeros((R.shape[1], self.shape[1]), dtype=self.dtype)
            for rows in self._blocks:
                out += R[rows].T @ self._Z[rows]
            return out
        return R.T @ self._Z

    def vector_pass(self, w, residual_of):
        """``Z @ w`` and ``r @ Z`` with ``r`` computed from the scores, in one pass.

        On blocks of rows that stay in cache between the two products (at
        2,729 x 384 float32, 4 MiB, each product otherwise reads the rows
        from the last-level cache: a single fit 7% faster); on a device, two
        products.

        Parameters
        ----------
        w : ndarray of shape (n_features,)
        residual_of : callable
            ``residual_of(rows, scores) -> r`` for a slice of rows and their
            scores ``Z[rows] @ w`` (a view it may modify in place).

        Returns
        -------
        scores : ndarray of shape (n_samples,)
        product : ndarray of shape (n_features,)
            ``r @ Z`` with the residuals of every block.
        """
        w = w.astype(self.dtype, copy=False)
        n, d = self.shape
        if not self._on_cpu:
            scores = self.scores(w[None])[:, 0]
            residual = residual_of(slice(0, n), scores)
            return scores, self.transposed_product(residual[:, None])[0]
        scores = np.empty(n, dtype=self.dtype)
        product = np.zeros(d, dtype=self.dtype)
        size = max(_PRODUCT_BLOCK, _VECTOR_PASS_BYTES // (d * self.dtype.itemsize))
        for start in range(0, n, size):
            rows = slice(start, start + size)
            block = np.matmul(self._Z[rows], w, out=scores[rows])
            product += residual_of(rows, block) @ self._Z[rows]
        return scores, product

    def _in_blocks(self, n_columns):
        """Whether a product with `n_columns` columns runs on row blocks.

        OpenBLAS (0.3.31, SkylakeX kernels, one thread) multiplies a tall
        matrix by 2 to 16 columns slowly, and blocks of 64 rows by them up to
        1.5x faster: 2,729 x 384 times 15 columns, both products, 0.96 ms
        against 1.22; 20,000 x 512 times 10, 6.8 ms against 10.4; 1,797 x
        256 times 10, 0.25 against 0.38. Not with fewer than 128 features
        (1,797 x 32: the blocks' calls cost more than they save) nor more
        columns (1,797 x 128 times 50: 0.53 against 0.43).
        """
        return 2 <= n_columns <= 16 and self.shape[1] >= 128

    def covariance(self, weights, working_memory=None):
        """``Z.T @ diag(weights) @ Z / weights.sum()`` (Z is centred), float64."""
        n, d = self.shape
        if (weights == weights[0]).all():
            gram = _to_numpy(self._Z.T @ self._Z)
            return np.multiply(gram, 1.0 / n, dtype=np.float64)
        roots = self._to_device(np.sqrt(weights / weights.sum()).astype(self.dtype))
        rows = chunk_n_rows(self.dtype.itemsize * d, working_memory)
        covariance = np.zeros((d, d))
        for start in range(0, n, rows):
            part = self._Z[start : start + rows] * roots[start : start + rows, None]
            covariance += _to_numpy(part.T @ part)
        return covariance

    def _to_device(self, array):
        if self._on_cpu:
            return array
        return torch.from_numpy(np.ascontiguousarray(array)).to(self._Z.device)


def _to_numpy(array):
    return array if isinstance(array, np.ndarray) else array.cpu().numpy()


class Problems:
    """A batch of penalised logistic problems on one standardised copy of rows.

    Problem ``k`` weights the rows by ``weights[:, k]`` (0 leaves a row out),
    standardises the features with its own ``means[k]`` and ``scales[k]``
    and has its own ``Cs[k]``. The rows are stored once, standardised with
    ``base_mean`` and ``base_scale``; since ``(x - m_k) / s_k = x~ * a_k +
    o_k`` with ``x~`` the stored row, ``a_k = base_scale / s_k`` and ``o_k =
    (base_mean - m_k) / s_k``, the scores of every problem come from one
    product with the stored rows.

    Parameters
    ----------
    rows : StandardisedRows
        The rows, standardised with `base_mean` and `base_scale`.
    y : ndarray of shape (n_samples,), int
        Class indices in ``range(n_classes)``.
    n_classes : int
        With 2 classes a problem has one output (the binomial loss, as
        scikit-learn fits it); otherwise one per class (multinomial).
    weights : ndarray of shape (n_samples, n_problems), float64
    Cs : ndarray of shape (n_problems,)
    means, scales : ndarray of shape (n_problems, n_features)
    base_mean, base_scale : ndarray of shape (n_features,)
    """

    def __init__(self, rows, y, n_classes, weights, Cs, means, scales, base_mean,
                 base_scale):
        totals = weights.sum(axis=0)
        self.rows = rows
        self.y = y
        self.n_outputs = 1 if n_classes == 2 else n_classes
        self.penalties = 1.0 / (np.asarray(Cs, dtype=float) * totals)
        self.row_weights = weights / totals
        self._row_weights = self.row_weights.astype(rows.dtype)
        self.factors = base_scale / scales
        self.offsets = (base_mean - means) / scales
        # one split, or splits with the moments of the stored rows: no folding
        self._standardised_alike = bool(
            (self.factors == 1).all() and (self.offsets == 0).all()
        )
        self._target = y.astype(rows.dtype)[:, None]
        self._rows = np.arange(len(y))

    @property
    def n_problems(self):
        return len(self.penalties)

    def __call__(self, W, b, index, *, curvature=False):
        """``(values, grad_W, grad_b, curvatures)`` of the problems `index`.

        Parameters
        ----------
        W : ndarray of shape (len(index), n_outputs, n_features), float64
            Coefficients of the standardised features of each problem.
        b : ndarray of shape (len(index), n_outputs), float64
            Intercepts.
        index : ndarray of int
            Which problems.
        curvature : bool, default=False
            Also return each problem's weighted mean of ``p (1 - p)`` over
            rows and outputs (else None).
        """
        n_index, n_outputs, d = W.shape
        if n_index == 1 and n_outputs == 1 and self._standardised_alike:
            return self._one_binary(W, b, index[0], curvature)
        if n_index == self.n_problems:  # `index` is every problem, in order
            weights, row_weights = self._row_weights, self.row_weights
            penalties = self.penalties
        else:
            weights = self._row_weights[:, index]
            row_weights = self.row_weights[:, index]
            penalties = self.penalties[index]
        if self._standardised_alike:
            scaled, shift = W, b
        else:
            factors, offsets = self.factors[index], self.offsets[index]
            scaled = W * factors[:, None, :]
            shift = b + np.einsum("pkd,pd->pk", W, offsets)
        scores = self.rows.scores(scaled.reshape(-1, d))
        scores = scores.reshape(-1, n_index, n_outputs)
        scores += shift.astype(scores.dtype)
        curvatures = None
        if n_outputs == 1:
            z = scores[:, :, 0]
            p = _expit(z, np.empty_like(z))
            loss = _binary_loss(z, p, self._target)
            if curvature:
                curvatures = np.einsum("ip,ip->p", row_weights, p * (1 - p))
            residual = p
            residual -= self._target
            residual *= weights
            residual = residual[:, :, None]
        else:
            scores -= _last_axis_max(scores)[:, :, None]
            residual = np.exp(scores)
            total = _last_axis_sum(residual)
            residual /= total[:, :, None]
            loss = np.log(total) - scores[self._rows, :, self.y]
            if curvature:
                spread = (residual * (1 - residual)).mean(axis=2)
                curvatures = np.einsum("ip,ip->p", row_weights, spread)
            residual[self._rows, :, self.y] -= 1.0
            residual *= weights[:, :, None]
        values = np.einsum("ip,ip->p", row_weights, loss.astype(np.float64))
        values += 0.5 * penalties * np.einsum("pkd,pkd->p", W, W)
        grad_b = residual.sum(axis=0, dtype=np.float64)
        residual = residual.reshape(-1, n_index * n_outputs)
        product = self.rows.transposed_product(residual)
        grad_W = product.reshape(n_index, n_outputs, d).astype(np.float64)
        if not self._standardised_alike:
            grad_W *= factors[:, None, :]
            grad_W += grad_b[:, :, None] * offsets[:, None, :]
        grad_W += penalties[:, None, None] * W
        if n_outputs > 1:
            # Adding one vector to every class's row changes no probability:
            # the exact gradient has no component along it (the optimum sums
            # to zero over the classes); rounding does, and the solver, which
            # sees no curvature there, would let it grow.
            grad_W -= grad_W.mean(axis=1, keepdims=True)
            grad_b -= grad_b.mean(axis=1, keepdims=True)
        return values, grad_W, grad_b, curvatures

    def _one_binary(self, W, b, k, curvature):
        """:meth:`__call__` for one binary problem on rows standardised alike.

        The same arithmetic on 1-D vectors, the residuals computed block by
        block between the two products (:meth:`StandardisedRows.vector_pass`):
        a single fit's 20-30 evaluations spent as much in reshapes and axis
        reductions of ``(n_samples, 1, 1)`` arrays as in the products.
        """
        w = W[0, 0]
        shift = np.asarray(b[0, 0], dtype=self.rows.dtype)
        target = self._target[:, 0]
        weights = self._row_weights[:, k]
        p = np.empty(len(target), dtype=self.rows.dtype)
        residual = np.empty_like(p)

        def residual_of(rows, scores):
            scores += shift
            block = _expit(scores, p[rows])
            out = np.subtract(block, target[rows], out=residual[rows])
            out *= weights[rows]
            return out

        z, product = self.rows.vector_pass(w, residual_of)
        loss = _binary_loss(z, p, target)
        row_weights = self.row_weights[:, k]
        penalty = self.penalties[k]
        value = row_weights @ loss.astype(np.float64) + 0.5 * penalty * (w @ w)
        curvatures = None
        if curvature:
            curvatures = np.array([row_weights @ (p * (1 - p)).astype(np.float64)])
        grad_b = residual.sum(dtype=np.float64)
        grad_W = product.astype(np.float64)
        grad_W += penalty * w
        values, grad_b = np.array([value]), np.array([[grad_b]])
        return values, grad_W[None, None], grad_b, curvatures


def _last_axis_max(A):
    """``A.max(axis=-1)`` of a (..., n_classes) array, one class at a time.

    numpy reduces a short last axis slowly: on 1,797 x 10 float32 scores
    ``max(axis=-1)`` took 104 us, this loop 11 us.
    """
    flat = A.reshape(-1, A.shape[-1])
    out = flat[:, 0].copy()
    for j in range(1, flat.shape[1]):
        np.maximum(out, flat[:, j], out=out)
    return out.reshape(A.shape[:-1])


def _last_axis_sum(A):
    """``A.sum(axis=-1)`` as a matrix-vector product (30 us against 4 us above)."""
    flat = A.reshape(-1, A.shape[-1])
    return (flat @ np.ones(flat.shape[1], dtype=A.dtype)).reshape(A.shape[:-1])


def _expit(z, out):
    """``1 / (1 + exp(-z))`` into `out` (may be `z`): 3x faster than scipy's
    expit on float32 (2,729 x 15 scores); ``exp(-z) = inf`` gives 0 exactly."""
    np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def _binary_loss(z, p, target):
    """``log(1 + exp(z)) - target * z`` from ``p = expit(z)``, as
    ``max(z, 0) - target * z - log(max(p, 1 - p))``: 6x faster than
    ``np.logaddexp(0, z)`` on float32 (2,729 x 5 scores: 0.12 ms against
    0.81 ms), and as exact."""
    log_max = 1.0 - p
    np.maximum(log_max, p, out=log_max)
    np.log(log_max, out=log_max)
    loss = np.maximum(z, 0)
    loss -= target * z
    loss -= log_max
    return loss


def solve(problems, W0, b0, *, preconditioner, tol, max_iter):
    """Minimise a batch of problems from ``(W0, b0)`` with preconditioned L-BFGS.

    Parameters
    ----------
    problems : Problems
    W0 : ndarray of shape (n_problems, n_outputs, n_features), float64
    b0 : ndarray of shape (n_problems, n_outputs), float64
    preconditioner : Diagonal or Whitening
        The family of changes of variables (see ``_preconditioners``); each
        problem's map is chosen for its curvature at its starting point.
    tol : float
        A problem stops once every entry of its gradient with respect to
        ``(W, b)`` is at most `tol` in absolute value (``gtol`` of scipy's
        L-BFGS-B, as scikit-learn's lbfgs solver uses it).
    max_iter : int

    Returns
    -------
    W, b : ndarray
    n_iter : ndarray of shape (n_problems,)
    status : ndarray of shape (n_problems,)
        ``"converged"``, ``"stalled"``, ``"max_iter"`` or ``"no_progress"``
        (see ``minimize_lbfgs``).
    max_gradient : ndarray of shape (n_problems,)
        Largest absolute gradient entry at the returned points.
    """
    everyone = np.arange(problems.n_problems)
    values, grad_W, grad_b, curvatures = problems(W0, b0, everyone, curvature=True)
    # floor: a warm start at a nearly separating solution has curvature ~0
    curvatures = np.maximum(curvatures, 1e-4)
    maps = preconditioner.at(curvatures, problems.penalties)
    root = np.sqrt(curvatures)[:, None]
    shape = W0.shape[1:]
    size = W0[0].size

    def split(x, index, maps):
        G = x[:, :size].reshape(len(index), *shape)
        return maps.to_model(G), x[:, size:] / root[index]

    def in_solver_space(index, maps, values, grad_W, grad_b):
        measures = np.maximum(
            np.abs(grad_W).max(axis=(1, 2)), np.abs(grad_b).max(axis=1)
        )
        gradient = np.concatenate(
            [maps.gradient(grad_W).reshape(len(index), -1), grad_b / root[index]],
            axis=1,
        )
        return values, gradient, measures

    def fun(x, index):
        subset = maps if len(index) == len(everyone) else maps.select(index)
        W, b = split(x, index, subset)
        values, grad_W, grad_b, _ = problems(W, b, index)
        return in_solver_space(index, subset, values, grad_W, grad_b)

    x0 = np.concatenate(
        [maps.to_solver(W0).reshape(len(everyone), -1), b0 * root], axis=1
    )
    first = in_solver_space(everyone, maps, values, grad_W, grad_b)
    if problems.n_problems > 1:
        x, max_gradient, n_iter, status = minimize_lbfgs(
            fun, x0, tol=tol, max_iter=max_iter, first=first
        )
    else:
        x, max_gradient, n_iter, status = minimize_one(
            fun, x0, tol=tol, max_iter=max_iter, first=first,
            line_search="armijo" if preconditioner.whitens else "wolfe",
        )
    W, b = split(x, everyone, maps)
    return W, b, n_iter, status, max_gradient
