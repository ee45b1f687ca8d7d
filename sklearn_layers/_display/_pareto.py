"""The Pareto front of layers: no other layer is as cheap and scores as well."""

import numpy as np


def pareto_front(costs, scores):
    """Which points no other point dominates (lower cost, higher score).

    A point is dominated when another costs no more and scores no less, and
    is strictly better in one of the two. Points with a NaN cost or score are
    never on the front; two identical points are both on it.

    Parameters
    ----------
    costs : array-like of shape (n_points,)
        Lower is better.
    scores : array-like of shape (n_points,)
        Higher is better.

    Returns
    -------
    on_front : ndarray of bool of shape (n_points,)
    """
    costs = np.asarray(costs, dtype=float)
    scores = np.asarray(scores, dtype=float)
    known = np.isfinite(costs) & np.isfinite(scores)
    c, s = costs[:, None], scores[:, None]  # row i against every column j
    no_worse = (costs[None, :] <= c) & (scores[None, :] >= s)
    better = (costs[None, :] < c) | (scores[None, :] > s)
    dominated = (no_worse & better & known[None, :]).any(axis=1)
    return known & ~dominated
