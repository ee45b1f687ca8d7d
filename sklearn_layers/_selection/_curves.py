"""Learning curves per layer: every layer x head at several training-set sizes.

The features are extracted once; each size fits the heads on a subset of the
training rows of those cached features, so a curve costs head fits, never a
forward pass. ``train_sizes`` reads as :func:`sklearn.model_selection.learning_curve`
reads it: floats in (0, 1] are fractions of the largest training set, integers
are numbers of rows.

The subsets are nested (each size's rows contain the smaller sizes' rows, so
a curve moves by adding rows, not by redrawing them) and stratified: every
class appears in any subset of at least ``n_classes`` rows, and a larger
subset follows the class frequencies of the training rows. They are drawn
with ``random_state``; the rows a head is scored on never change with the
size.
"""

import warnings

import numpy as np
from sklearn.utils import check_random_state

from ._scoring import Splits, score_layers


def resolve_train_sizes(train_sizes, n_max):
    """Sizes as row counts, sorted and distinct (the ``learning_curve`` rules).

    Parameters
    ----------
    train_sizes : array-like of float or int
        Floats in (0, 1]: fractions of ``n_max``; integers in [1, n_max]: row
        counts.
    n_max : int
        The rows available to the smallest training set.

    Returns
    -------
    sizes : ndarray of int

    Raises
    ------
    ValueError
        If a size is out of range or the sizes mix floats and integers.
    """
    sizes = np.asarray(train_sizes)
    if sizes.ndim != 1 or sizes.size == 0:
        raise ValueError(f"train_sizes must be a non-empty 1-D list; got {train_sizes!r}.")
    if np.issubdtype(sizes.dtype, np.floating):
        if sizes.min() <= 0 or sizes.max() > 1:
            raise ValueError(
                "train_sizes given as fractions (floats) must lie in (0, 1]; got "
                f"{sizes.tolist()}. Pass integers for row counts."
            )
        counts = np.floor(sizes * n_max).astype(int)
    elif np.issubdtype(sizes.dtype, np.integer):
        if sizes.min() < 1 or sizes.max() > n_max:
            raise ValueError(
                f"train_sizes given as row counts (integers) must lie in [1, {n_max}] "
                f"(the rows of the smallest training set); got {sizes.tolist()}."
            )
        counts = sizes.astype(int)
    else:
        raise ValueError(
            f"train_sizes must be floats in (0, 1] or integers; got {train_sizes!r}."
        )
    unique = np.unique(counts)
    if unique.size < counts.size:
        warnings.warn(
            f"train_sizes {sizes.tolist()} give the row counts {counts.tolist()} with "
            f"repeats; each distinct count is scored once: {unique.tolist()}.",
            RuntimeWarning, stacklevel=3,
        )
    return unique


def nested_order(y, rng):
    """An order of the rows whose every prefix is a stratified subset.

    One row of each class comes first (in random order), so every prefix of
    at least ``n_classes`` rows holds every class; the other rows follow
    interleaved by their rank within their class relative to the class size,
    so a prefix follows the class frequencies.

    Parameters
    ----------
    y : ndarray of shape (n_samples,)
    rng : numpy RandomState

    Returns
    -------
    order : ndarray of int of shape (n_samples,)
    """
    y = np.asarray(y)
    keys = np.empty(len(y))
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        rank = np.arange(len(rows), dtype=float)
        jitter = rng.uniform(size=len(rows))
        # rank 0: before every other row; rank r >= 1: at (r + jitter) / size
        keys[rows] = np.where(rank == 0, jitter - 1.0, (rank + jitter) / len(rows))
    return np.argsort(keys, kind="stable")


def _check_size(size, y, where):
    n_classes = np.unique(y).size
    if size < n_classes:
        raise ValueError(
            f"A training size of {size} rows is below the {n_classes} classes of "
            f"{where}: a head needs at least one row per class. Use sizes of at "
            f"least {n_classes}."
        )


def score_curves(features, slices, y, estimators, scorers, splits, train_sizes, *,
                 strata=None, random_state=None, n_jobs=None, n_bootstrap=0, progress=None):
    """Every estimator on every layer, fitted on nested subsets of the training rows.

    Parameters
    ----------
    features : ndarray of shape (n_samples, n_features)
        All layers side by side.
    slices : dict of str -> slice
        Each layer's columns, in network order.
    y : ndarray of shape (n_samples,)
    estimators, scorers : dict of str -> estimator / scorer
        As :func:`._scoring.score_layers` takes them.
    splits : Splits
        Cross-validation splits (each fold's training rows are subsampled;
        its test rows are kept) and/or test sets (scored by estimators fitted
        on subsets of all the rows).
    train_sizes : array-like
        See :func:`resolve_train_sizes`; relative to the smallest training set
        (the smallest fold's training rows, or all rows with test sets only).
    strata : ndarray of shape (n_samples,), default=None
        The labels the subsets are stratified on; ``None`` means ``y``. A
        control task passes the task's labels, so that its heads are fitted
        on the very rows the task's heads were (with the same integer
        ``random_state``).
    random_state : int, RandomState or None
        Draws the subsets and seeds the bootstrap.
    n_jobs, n_bootstrap, progress
        As :func:`._scoring.score_layers` takes them.

    Returns
    -------
    rows : list of dict
        :func:`._scoring.score_layers`' rows with ``train_size`` added (the
        rows each fit saw), sizes in increasing order, layers in network
        order within a size.
    """
    rng = check_random_state(random_state)
    y = np.asarray(y)
    strata = y if strata is None else np.asarray(strata)
    n_max = min([len(train) for train, _ in splits.cv] if splits.cv else []
                + ([len(y)] if splits.tests else []))
    sizes = resolve_train_sizes(train_sizes, n_max)
    fold_orders = [train[nested_order(strata[train], rng)] for train, _ in splits.cv or []]
    all_order = nested_order(strata, rng) if splits.tests else None
    seed = rng.randint(np.iinfo(np.int32).max)
    rows = []
    for size in sizes:
        size = int(size)
        if splits.cv:
            for order in fold_orders:
                _check_size(size, strata[order], "a fold's training rows")
            cv = [(order[:size], test) for order, (_, test) in zip(fold_orders, splits.cv)]
            found = score_layers(features, slices, y, estimators, scorers, Splits(cv=cv),
                                 n_jobs=n_jobs, n_bootstrap=n_bootstrap,
                                 random_state=seed, progress=progress)
            rows.extend(dict(row, train_size=size) for row in found)
        if splits.tests:
            _check_size(size, strata, "the training rows")
            subset = np.sort(all_order[:size])
            found = score_layers(features[subset], slices, y[subset], estimators, scorers,
                                 Splits(tests=splits.tests), n_jobs=n_jobs,
                                 n_bootstrap=n_bootstrap, random_state=seed,
                                 progress=progress)
            rows.extend(dict(row, train_size=size) for row in found)
    return rows

