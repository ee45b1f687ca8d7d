"""The linear probe's core on plain arrays: many splits and values of C at once.

:class:`LinearProbeClassifier.fit` calls :func:`fit_path` with one split (all
rows) and one ``C``; :func:`linear_probe_path` with many splits and values of
``C``, as scikit-learn's ``_logistic_regression_path`` serves both
``LogisticRegression`` and ``LogisticRegressionCV``. Nothing here knows the
estimator: it takes arrays and settings, and returns arrays.

A split is a list of training row indices. Rows are weighted by how often
they occur in it (a bootstrap's repeated row counts as often as it is
repeated), times their ``sample_weight`` and class weight, so a split's fit
is exactly the fit on ``X[train], y[train]``.
"""

import warnings
from contextlib import contextmanager

import numpy as np
from sklearn import get_config
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

from ...utils._threads import torch_threads
from .._validation import check_at_least_two_classes
from ._preconditioners import Diagonal, Whitening
from ._solver import Problems, StandardisedRows, moments, moments_of_each, solve
from ._solver import standardize as standardized_copy

# Above this many features "auto" skips whitening: its covariance costs
# n_samples * n_features**2 and its factorisation n_features**3, against
# n_samples * n_features * n_classes per solver iteration.
AUTO_WHITEN_MAX_FEATURES = 2048
# The rest of "auto"'s rule is read off benchmarks/bench_probe.py (one thread,
# tol=1e-4), where the diagonal preconditioner takes as many iterations as
# scikit-learn's L-BFGS on the standardised features and whitening cuts them
# or not depending on the data:
# - fewer than 2 rows per feature: the covariance is rank-deficient and costs
#   more than it saves (200 x 384 tweets: whitening 0.4-0.65x scikit-learn's
#   time, diagonal 1.5x);
# - many outputs on few rows per feature (the digits CNN's 256 features on
#   1,797 or 899 rows, 10 classes): whitening saved no iterations (26 against
#   24) and its covariance and factor cost 0.76-0.78x scikit-learn's time;
#   it keeps its gain with few variables (32-128 features x 10 classes,
#   1.0-1.6x; 384 x 1 for two classes, 2x) or many rows (20,000 x 512 x 10).
AUTO_WHITEN_MIN_ROWS_PER_FEATURE = 2
AUTO_WHITEN_MAX_VARIABLES = 1024
AUTO_WHITEN_MANY_ROWS_PER_FEATURE = 16


def uses_whitening(preconditioner, n_samples, n_features, n_classes):
    """Whether `preconditioner` ("auto", "whiten" or "diagonal") whitens this shape."""
    if preconditioner != "auto":
        return preconditioner == "whiten"
    n_outputs = 1 if n_classes <= 2 else n_classes
    rows_per_feature = n_samples / n_features
    return (
        n_features <= AUTO_WHITEN_MAX_FEATURES
        and rows_per_feature >= AUTO_WHITEN_MIN_ROWS_PER_FEATURE
        and (n_outputs * n_features <= AUTO_WHITEN_MAX_VARIABLES
             or rows_per_feature >= AUTO_WHITEN_MANY_ROWS_PER_FEATURE)
    )


def encode_targets(y, weights, class_weight, name):
    """Sorted classes, class indices, and `weights` times the class weights.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    weights : ndarray of shape (n_samples,), float64
    class_weight : dict, "balanced" or None
    name : str
        The estimator's name, for the error with fewer than two classes.
    """
    check_classification_targets(y)
    classes, y_ind = np.unique(y, return_inverse=True)
    check_at_least_two_classes(classes, name)
    if class_weight == "balanced":
        # the weighted counts, as LogisticRegression counts them
        counts = np.bincount(y_ind, weights=weights, minlength=len(classes))
        with np.errstate(divide="ignore"):
            per_class = np.where(counts > 0, counts.sum() / (len(classes) * counts), 0.0)
        weights = weights * per_class[y_ind]
    elif class_weight is not None:
        per_class = compute_class_weight(class_weight, classes=classes, y=y)
        weights = weights * per_class[y_ind]
    return classes, y_ind, weights


@contextmanager
def product_threads(n_threads):
    """BLAS, OpenMP and torch threads set to `n_threads` for the body (None: as is).

    Through the package's one thread budget, whose lock keeps concurrent fits
    from restoring BLAS's process-wide count out of order.
    """
    if n_threads is None:
        yield
        return
    with torch_threads(n_threads):
        yield


def fit_path(X, y, train_sets, Cs, *, sample_weight, class_weight, standardize,
             preconditioner, tol, max_iter, device, name, starts=None,
             covariance=None):
    """Fit the probe on every (training set, C), sharing the work.

    One standardised copy of `X` serves every problem (each problem's own
    standardisation, by its training rows, is folded into its coefficients);
    one whitening covariance, of the rows weighted by how often the training
    sets hold them (all splits together), preconditions every problem; all
    problems are solved together, in batches that fit `working_memory`, and
    a training set's fit in a later batch (a larger ``C``) starts from its
    solution in an earlier one.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64, C order
    y : ndarray of shape (n_samples,)
        Labels.
    train_sets : list of ndarray of int
        Training row indices of each split; repeats count as repeats.
    Cs : list of float
        Increasing.
    sample_weight : ndarray of shape (n_samples,), float64
    class_weight, standardize, preconditioner, tol, max_iter :
        As :class:`LinearProbeClassifier` has them.
    device : torch.device
        Where the products with the rows run.
    name : str
        Estimator name for messages.
    starts : list of (classes, coef, intercept) or None, default=None
        Per training set, a previous solution in the original feature space
        to start the first ``C`` from (None: zeros).
    covariance : ndarray of shape (n_features, n_features), default=None
        A whitening covariance to reuse (computed when None or of another
        width).

    Returns
    -------
    fits : list of dict
        One per (training set, C), ordered by training set then ``C``, with
        ``split``, ``C``, ``classes``, ``coef`` (``(n_outputs, n_features)``,
        original space), ``intercept``, ``mean``, ``scale``, ``n_iter``,
        ``status`` and ``max_gradient``.
    covariance : ndarray or None
        The whitening covariance used (None with the diagonal preconditioner).
    """
    n_samples, n_features = X.shape
    splits = [_split(y, train, sample_weight, class_weight, name) for train in train_sets]
    # the rows are stored standardised by the moments of all splits together
    counts = sum(split["weights"] for split in splits)
    base_mean, base_scale, variances = moments(X, counts, scale=standardize)
    if len(splits) == 1:  # its own moments are the base ones
        splits[0].update(mean=base_mean, scale=base_scale)
    else:
        means, scales, _ = moments_of_each(
            X, np.stack([split["weights"] for split in splits], axis=1),
            centre=base_mean, scale=standardize,
        )
        for split, mean, scale in zip(splits, means, scales):
            split.update(mean=mean, scale=scale)
    rows = StandardisedRows(standardized_copy(X, base_mean, base_scale), device)
    n_classes = max(len(split["classes"]) for split in splits)
    if uses_whitening(preconditioner, n_samples, n_features, n_classes):
        if covariance is None or covariance.shape != (n_features, n_features):
            covariance = rows.covariance(counts)
        family = Whitening(covariance)
    else:
        covariance, family = None, Diagonal(variances)
    latest = dict(enumerate(starts)) if starts is not None else {}
    fits = []
    for group in _batches(splits, Cs, n_samples):
        group_fits = _solve_batch(rows, y, family, group, base_mean, base_scale,
                                  latest, tol, max_iter)
        latest.update(
            (fit["split"], (fit["classes"], fit["coef"], fit["intercept"]))
            for fit in group_fits
        )
        fits += group_fits
    fits.sort(key=lambda fit: (fit["split"], fit["C"]))
    return fits, covariance


def _split(y, train, sample_weight, class_weight, name):
    """One training set: its classes and per-row weights (with repeats)."""
    train = np.asarray(train)
    if train.dtype == bool:
        train = np.flatnonzero(train)
    if train.size == 0:
        raise ValueError(f"{name} got an empty training set.")
    classes, y_ind, weights = encode_targets(
        y[train], sample_weight[train], class_weight, name
    )
    # a row repeated in `train` (a bootstrap) counts as often as it occurs
    row_weights = np.bincount(train, weights=weights, minlength=len(y))
    return {"classes": classes, "weights": row_weights}


def _batches(splits, Cs, n_samples):
    """(split, C) problems with the same classes, in batches that fit in memory.

    All values of C in one batch where memory allows: the solver runs the
    problems of a batch in lockstep, so a batch costs its slowest problem's
    iterations, and a product with 15 columns costs less than twice one with
    5 (a 5-fold x 3-C sweep on 2,729 x 384 tweets: 35 evaluations against 76
    for one batch per C warm-started from the previous, 0.8 against 1.1 s
    for 7 layers). Problems are ordered by C then split, so that a batch cut
    short by memory leaves the larger C to later batches, which start from
    the earlier solutions.
    """
    groups = {}
    for C in Cs:
        for position, split in enumerate(splits):
            key = tuple(split["classes"].tolist())
            groups.setdefault(key, []).append({"split": position, "C": C, **split})
    for group in groups.values():
        n_classes = len(group[0]["classes"])
        n_outputs = 1 if n_classes == 2 else n_classes
        # scores, residuals and a few temporaries of shape (n_samples, n_outputs)
        per_problem = 6 * n_samples * n_outputs * 8
        size = max(1, int(get_config()["working_memory"] * 2**20 // per_problem))
        for start in range(0, len(group), size):
            yield group[start : start + size]


def _solve_batch(rows, y, family, group, base_mean, base_scale, latest, tol, max_iter):
    """Solve one batch of problems together; one solution dict per problem."""
    classes = group[0]["classes"]
    # rows of a class outside `classes` have weight 0 in every problem here
    y_ind = np.minimum(np.searchsorted(classes, y), len(classes) - 1)
    problems = Problems(
        rows,
        y_ind,
        len(classes),
        np.stack([problem["weights"] for problem in group], axis=1),
        np.array([problem["C"] for problem in group]),
        np.stack([problem["mean"] for problem in group]),
        np.stack([problem["scale"] for problem in group]),
        base_mean,
        base_scale,
    )
    starts = [
        initial_point(latest.get(problem["split"]), classes, problem["mean"],
                      problem["scale"])
        for problem in group
    ]
    W, b, n_iter, status, max_gradient = solve(
        problems,
        np.stack([W0 for W0, _ in starts]),
        np.stack([b0 for _, b0 in starts]),
        preconditioner=family,
        tol=tol,
        max_iter=max_iter,
    )
    fits = []
    for k, problem in enumerate(group):
        coef = W[k] / problem["scale"]
        fits.append({
            "split": problem["split"], "C": problem["C"], "classes": classes,
            "coef": coef, "intercept": b[k] - coef @ problem["mean"],
            "mean": problem["mean"], "scale": problem["scale"],
            "n_iter": int(n_iter[k]), "status": status[k],
            "max_gradient": float(max_gradient[k]),
        })
    return fits


def initial_point(previous, classes, mean, scale):
    """Standardised ``(W, b)`` to start from: `previous` solution or zeros.

    `previous` is ``(classes, coef, intercept)`` in the original feature
    space, or None; it is used only for the same classes and width.
    """
    n_outputs = 1 if len(classes) == 2 else len(classes)
    d = mean.shape[0]
    if previous is None:
        return np.zeros((n_outputs, d)), np.zeros(n_outputs)
    previous_classes, coef, intercept = previous
    if coef.shape != (n_outputs, d) or not np.array_equal(previous_classes, classes):
        return np.zeros((n_outputs, d)), np.zeros(n_outputs)
    W = coef * scale
    b = intercept + coef @ mean
    if n_outputs > 1:  # the multinomial optimum sums to zero over the classes
        W = W - W.mean(axis=0)
        b = b - b.mean()
    return W, b


def warn_if_not_converged(fit, *, name, max_iter, tol, dtype):
    """A ConvergenceWarning saying what to change, unless `fit` converged."""
    if fit["status"] in ("converged", "stalled"):
        return
    if fit["status"] == "max_iter":
        advice = f"Increase max_iter (now {max_iter})"
    else:
        advice = (
            "No step decreased the objective any further at "
            f"{np.dtype(dtype)} precision; use a larger tol"
            + (" or pass float64 X" if np.dtype(dtype) != np.float64 else "")
        )
    warnings.warn(
        f"{name} stopped after {fit['n_iter']} iterations with a largest "
        f"gradient entry of {fit['max_gradient']:.3g} > tol={tol}. {advice}.",
        ConvergenceWarning,
    )


def check_Cs(Cs):
    """Values of C as a sorted list of distinct positive floats."""
    values = np.atleast_1d(np.asarray(Cs, dtype=float))
    if values.ndim != 1 or values.size == 0 or not (values > 0).all():
        raise ValueError(f"Cs must be one or more positive numbers; got {Cs!r}.")
    return [float(C) for C in np.unique(values)]
