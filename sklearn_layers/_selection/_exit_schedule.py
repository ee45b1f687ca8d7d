"""How a batch of rows goes through the exits: the stages of early-exit prediction.

One row alone stops the forward at its exit, which is exact. A batch runs as
deep as its deepest row, so the rows that exited early ride along. Early-exit
prediction therefore runs in *stages*: stage ``i`` sends the rows still
undecided through the network up to exit ``s_i`` (stopping sooner when every
row of a batch has exited), and the rows still undecided after ``s_i`` are
regrouped into new batches for stage ``i + 1``, which runs them again from the
input (the network is treated as a black box: no hidden state is resumed).
A stage boundary trades that recomputation against the ride-along; the
schedule is chosen by simulating every choice of boundaries on the exits the
calibration rows took, at the batch size prediction will use.
"""

from itertools import combinations

import numpy as np

_MAX_ENUMERATED = 12  # exits whose subsets are all tried; beyond, a greedy choice


def simulated_cost(exits, costs, stages, batch_size):
    """Mean forward cost per row of running ``exits`` in ``stages``.

    Parameters
    ----------
    exits : ndarray of int of shape (n_rows,)
        The exit each row takes, rows in the order they are batched.
    costs : ndarray of shape (n_exits,)
        Cost of reaching each exit, per row.
    stages : sequence of int
        Increasing exit indices ending with the last exit.
    batch_size : int

    Returns
    -------
    mean_cost : float
    """
    exits = np.asarray(exits)
    costs = np.asarray(costs, dtype=float)
    pending = exits
    total = 0.0
    for stop in stages:
        if pending.size == 0:
            break
        starts = np.arange(0, pending.size, batch_size)
        sizes = np.diff(np.append(starts, pending.size))
        deepest = np.maximum.reduceat(np.minimum(pending, stop), starts)
        total += float(np.dot(sizes, costs[deepest]))
        pending = pending[pending > stop]
    return total / max(exits.size, 1)


def plan_stages(exits, costs, batch_size):
    """The stage boundaries with the lowest simulated cost.

    Parameters
    ----------
    exits : ndarray of int of shape (n_rows,)
        Exits of the calibration rows.
    costs : ndarray of shape (n_exits,)
    batch_size : int

    Returns
    -------
    stages : tuple of int
        Ends with the last exit. One row per batch always gives one stage.
    """
    costs = np.asarray(costs, dtype=float)
    last = costs.size - 1
    used = sorted(set(np.unique(exits).tolist()) - {last})  # an unused exit ends no stage
    best = ((last,), simulated_cost(exits, costs, (last,), batch_size))
    if batch_size == 1:
        return best[0]
    if len(used) <= _MAX_ENUMERATED:
        choices = (c for r in range(1, len(used) + 1) for c in combinations(used, r))
        for chosen in choices:
            stages = (*chosen, last)
            cost = simulated_cost(exits, costs, stages, batch_size)
            if cost < best[1]:
                best = (stages, cost)
        return best[0]
    stages = [last]
    improved = True
    while improved:  # add the boundary that lowers the cost most, while one does
        improved = False
        for k in used:
            if k in stages:
                continue
            trial = tuple(sorted([*stages, k]))
            cost = simulated_cost(exits, costs, trial, batch_size)
            if cost < best[1]:
                best, improved = (trial, cost), True
        stages = list(best[0])
    return best[0]
