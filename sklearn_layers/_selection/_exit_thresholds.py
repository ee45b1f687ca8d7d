"""Per-exit confidence thresholds: the cheapest cascade that keeps its accuracy.

A cascade of ``K`` exits, each with a head, sends a row out at the first exit
whose head's confidence (its largest class probability) reaches that exit's
threshold; the last exit takes every row left. Given held-out confidences and
correctness of every exit on the same rows, :func:`calibrate_thresholds`
chooses the thresholds. The rule, and why:

*Minimise the mean forward cost per row (the share of a full forward pass
spent to reach the row's exit) subject to held-out accuracy >= a target.*

The cost is what early exit is for, and the accuracy floor is what a user can
state in advance ("at most half a point below the last exit"). The search
starts from "every row goes to the last exit" (which meets the floor by
construction, since the floor is set below that exit's accuracy) and lowers
thresholds greedily: each step takes, over every exit and every candidate
threshold (up to ``n_candidates`` quantiles of that exit's confidences), the
move saving the most cost per point of accuracy lost (free moves first) that
keeps the floor; then coordinate sweeps set each threshold, the others fixed,
to the cheapest feasible value until nothing changes. The search is exact
about the calibration rows, so on new rows the accuracy can fall a little
further below the floor than ``max_score_drop`` (the usual price of a
threshold tuned on held-out data); more calibration rows shrink that gap.
"""

import numpy as np

NEVER = np.inf  # a threshold no confidence reaches: no row exits there


def first_exits(confidences, thresholds):
    """The exit each row takes: the first whose confidence reaches its threshold.

    Parameters
    ----------
    confidences : ndarray of shape (n_rows, n_exits)
    thresholds : ndarray of shape (n_exits,)
        The last one is ignored: the last exit takes every row left.

    Returns
    -------
    exits : ndarray of int of shape (n_rows,)
    """
    confidences = np.asarray(confidences, dtype=float)
    n_exits = confidences.shape[1]
    reached = confidences >= np.asarray(thresholds, dtype=float)[None, :]
    reached[:, n_exits - 1] = True
    return np.argmax(reached, axis=1)


def operating_point(exits, correct, costs):
    """Accuracy, mean cost per row and fraction of rows at each exit.

    Parameters
    ----------
    exits : ndarray of int of shape (n_rows,)
    correct : ndarray of bool of shape (n_rows, n_exits)
        Whether each exit's head is right on each row.
    costs : ndarray of shape (n_exits,)

    Returns
    -------
    accuracy : float
    mean_cost : float
    fractions : ndarray of shape (n_exits,)
    """
    exits = np.asarray(exits)
    n_rows, n_exits = correct.shape
    accuracy = float(correct[np.arange(n_rows), exits].mean())
    mean_cost = float(np.asarray(costs, dtype=float)[exits].mean())
    fractions = np.bincount(exits, minlength=n_exits) / n_rows
    return accuracy, mean_cost, fractions


def _candidates(confidences, n_candidates):
    """Per exit, ascending candidate thresholds, ending with NEVER."""
    out = []
    for column in confidences.T:
        values = np.unique(column)
        if values.size > n_candidates:
            values = np.unique(np.quantile(column, np.linspace(0, 1, n_candidates),
                                           method="inverted_cdf"))
        out.append(np.append(values, NEVER))
    return out


def _exit_after(confidences, thresholds, k):
    """For each row, the exit it takes when exit ``k`` lets it pass."""
    later = confidences[:, k + 1:] >= thresholds[None, k + 1:]
    later[:, -1] = True
    return k + 1 + np.argmax(later, axis=1)


def _moves(confidences, correct, costs, thresholds, exits, k, grid):
    """Number correct and total cost for every candidate threshold at exit ``k``."""
    n_rows = confidences.shape[0]
    rows = np.arange(n_rows)
    fixed = exits < k  # rows leaving before k do not see exit k
    base_correct = correct[rows[fixed], exits[fixed]].sum()
    base_cost = costs[exits[fixed]].sum()
    open_rows = rows[~fixed]
    after = _exit_after(confidences[open_rows], thresholds, k)
    conf = confidences[open_rows, k]
    order = np.argsort(-conf, kind="stable")
    conf_sorted = conf[order]
    here_correct = np.concatenate([[0], np.cumsum(correct[open_rows[order], k])])
    after_correct = correct[open_rows[order], after[order]]
    after_cost = costs[after[order]]
    tail_correct = np.concatenate([np.cumsum(after_correct[::-1])[::-1], [0]])
    tail_cost = np.concatenate([np.cumsum(after_cost[::-1])[::-1], [0]])
    # rows with confidence >= c exit at k: the first n_exit rows of the sorted order
    n_exit = np.searchsorted(-conf_sorted, -grid, side="right")
    n_correct = base_correct + here_correct[n_exit] + tail_correct[n_exit]
    total_cost = base_cost + n_exit * costs[k] + tail_cost[n_exit]
    return n_correct, total_cost


def calibrate_thresholds(confidences, correct, costs, target_accuracy, *, n_candidates=128):
    """The thresholds of the cheapest cascade whose accuracy stays >= the target.

    Parameters
    ----------
    confidences : ndarray of shape (n_rows, n_exits)
        Held-out confidence of each exit's head on each row.
    correct : ndarray of bool of shape (n_rows, n_exits)
        Whether each exit's head is right on each row.
    costs : ndarray of shape (n_exits,)
        Non-decreasing cost of reaching each exit.
    target_accuracy : float
        The floor. When even the last exit alone misses it, every row goes to
        the last exit.
    n_candidates : int, default=128
        Candidate thresholds per exit (quantiles of its confidences).

    Returns
    -------
    thresholds : ndarray of shape (n_exits,)
        ``inf`` where no row exits; the last is ``-inf`` (takes every row left).
    """
    confidences = np.asarray(confidences, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    costs = np.asarray(costs, dtype=float)
    n_rows, n_exits = confidences.shape
    thresholds = np.full(n_exits, NEVER)
    thresholds[-1] = -np.inf
    if n_exits == 1:
        return thresholds
    # integer arithmetic on counts: no float tie decides feasibility
    needed = int(np.ceil(target_accuracy * n_rows - 1e-9))
    grids = _candidates(confidences[:, :-1], n_candidates)
    exits = first_exits(confidences, thresholds)
    n_correct = int(correct[np.arange(n_rows), exits].sum())
    cost = float(costs[exits].sum())
    if n_correct < needed:
        return thresholds
    while True:  # greedy: the best saving per correct answer lost
        best = None
        for k in range(n_exits - 1):
            grid = grids[k][grids[k] < thresholds[k]]
            if grid.size == 0:
                continue
            counts, totals = _moves(confidences, correct, costs, thresholds, exits, k, grid)
            saving = cost - totals
            loss = n_correct - counts
            ok = (counts >= needed) & (saving > 1e-12 * max(cost, 1.0))
            if not ok.any():
                continue
            ratio = np.where(loss <= 0, np.inf, saving / np.maximum(loss, 1))
            key = np.lexsort((saving[ok], ratio[ok]))[-1]
            i = np.flatnonzero(ok)[key]
            candidate = (ratio[i], saving[i], k, grid[i], counts[i], totals[i])
            if best is None or candidate[:2] > best[:2]:
                best = candidate
        if best is None:
            break
        _, _, k, thresholds[k], n_correct, cost = best
        exits = first_exits(confidences, thresholds)
    changed = True
    while changed:  # coordinate sweeps: each threshold at its cheapest feasible value
        changed = False
        for k in range(n_exits - 1):
            grid = grids[k]
            counts, totals = _moves(confidences, correct, costs, thresholds, exits, k, grid)
            feasible = counts >= needed
            i = np.flatnonzero(feasible)[np.argmin(totals[feasible])]
            if totals[i] < cost - 1e-12 * max(cost, 1.0):
                thresholds[k], n_correct, cost = grid[i], counts[i], totals[i]
                exits = first_exits(confidences, thresholds)
                changed = True
    return thresholds


def tradeoff_curve(confidences, correct, costs, reference, max_score_drops, *,
                   evaluation=None):
    """Accuracy and mean cost of the cascade calibrated for each ``max_score_drop``.

    Parameters
    ----------
    confidences, correct : ndarrays of shape (n_rows, n_exits)
        The calibration rows' held-out confidences and correctness.
    costs : ndarray of shape (n_exits,)
    reference : float
        The accuracy ``max_score_drop`` is subtracted from.
    max_score_drops : sequence of float
    evaluation : tuple of (confidences, correct), default=None
        Other rows to measure the calibrated cascades on; ``None`` measures
        them on the calibration rows themselves (optimistic: the thresholds
        were tuned on them).

    Returns
    -------
    scores, mean_costs : ndarray of shape (n_drops,)
    """
    conf_eval, correct_eval = (confidences, correct) if evaluation is None else evaluation
    scores, mean_costs = [], []
    for drop in max_score_drops:
        thresholds = calibrate_thresholds(confidences, correct, costs, reference - drop)
        exits = first_exits(conf_eval, thresholds)
        score, cost, _ = operating_point(exits, np.asarray(correct_eval, bool), costs)
        scores.append(score)
        mean_costs.append(cost)
    return np.asarray(scores), np.asarray(mean_costs)
