"""GrowNet against HistGradientBoosting and a scaled linear model.

Cross-validated accuracy (classification) or R^2 (regression) and mean fit time
per fold on scikit-learn's bundled tabular data sets and a 50,000 x 30
``make_classification`` problem (3-fold there), all models with their default
parameters (GrowNet: ``random_state=0``), every model on one thread
(``--threads``). Then the growth
of GrowNet's fit time with ``n_estimators`` (early stopping off), with and
without the corrective step.

Usage::

    python benchmarks/bench_grownet.py            # everything, ~10 min on 2 cores
    python benchmarks/bench_grownet.py --no-large # skip the 50,000-row set
"""

import argparse
import os
import time

import numpy as np
import torch
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
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info, threadpool_limits

from sklearn_layers.heads._grownet import GrowNetClassifier, GrowNetRegressor


def datasets(large=True):
    """Yield (name, X, y, is_classification, cv)."""
    for name, load in [
        ("breast_cancer", load_breast_cancer),
        ("wine", load_wine),
        ("digits", load_digits),
    ]:
        X, y = load(return_X_y=True)
        yield name, X, y, True, StratifiedKFold(5, shuffle=True, random_state=0)
    X, y = load_diabetes(return_X_y=True)
    yield "diabetes", X, y, False, KFold(5, shuffle=True, random_state=0)
    if large:
        X, y = make_classification(
            n_samples=50_000,
            n_features=30,
            n_informative=10,
            n_redundant=10,
            random_state=0,
        )
        yield (
            "make_clf_50k",
            X,
            y,
            True,
            StratifiedKFold(3, shuffle=True, random_state=0),
        )


def models(is_classification, n_threads):
    if is_classification:
        return [
            ("GrowNet", GrowNetClassifier(random_state=0, n_threads=n_threads)),
            ("HistGB", HistGradientBoostingClassifier(random_state=0)),
            (
                "LogReg",
                make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
            ),
        ]
    return [
        ("GrowNet", GrowNetRegressor(random_state=0, n_threads=n_threads)),
        ("HistGB", HistGradientBoostingRegressor(random_state=0)),
        ("Ridge", make_pipeline(StandardScaler(), Ridge())),
    ]


def compare(large, n_threads):
    header = (
        f"{'dataset':<14}{'n x d':>12}  {'model':<8}{'score':>8}{'vs HistGB':>11}"
        f"{'fit s/fold':>12}{'x HistGB':>10}{'stages':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, X, y, is_classification, cv in datasets(large):
        rows = []
        for model_name, estimator in models(is_classification, n_threads):
            result = cross_validate(
                estimator, X, y, cv=cv, return_estimator=model_name == "GrowNet"
            )
            stages = ""
            if "estimator" in result:
                kept = [est.n_estimators_ for est in result["estimator"]]
                stages = f"{np.mean(kept):.0f}"
            rows.append(
                (
                    model_name,
                    result["test_score"].mean(),
                    result["fit_time"].mean(),
                    stages,
                )
            )
        reference = {r[0]: r for r in rows}["HistGB"]
        metric = "acc" if is_classification else "R2"
        for i, (model_name, score, fit_time, stages) in enumerate(rows):
            print(
                f"{name if i == 0 else '':<14}"
                f"{f'{X.shape[0]}x{X.shape[1]}' if i == 0 else '':>12}  "
                f"{model_name:<8}{score:>8.4f}"
                f"{100 * (score - reference[1]):>+10.2f}p"
                f"{fit_time:>12.3f}{fit_time / reference[2]:>10.1f}{stages:>8}"
            )
        print(f"{'':<26}({cv.get_n_splits()}-fold CV {metric}; 'p' = points)")


def growth(n_threads):
    X, y = load_digits(return_X_y=True)
    print("\nFit time vs n_estimators (digits, 1797 x 64, early_stopping=False)")
    header = f"{'n_estimators':>12}{'corrective=2 s':>16}{'ratio':>7}{'corrective=0 s':>16}{'ratio':>7}"
    print(header)
    print("-" * len(header))
    base = {}
    for n_estimators in (5, 10, 20, 40):
        line = f"{n_estimators:>12}"
        for corrective in (2, 0):
            clf = GrowNetClassifier(
                n_estimators=n_estimators,
                corrective_epochs=corrective,
                early_stopping=False,
                random_state=0,
                n_threads=n_threads,
            )
            tic = time.perf_counter()
            clf.fit(X, y)
            seconds = time.perf_counter() - tic
            base.setdefault(corrective, seconds)
            line += f"{seconds:>16.2f}{seconds / base[corrective]:>7.1f}"
        print(line)
    print("(ratio: time / time at n_estimators=5; linear growth: 2, 4, 8)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-large", action="store_true", help="skip the 50k set")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads of every model (torch, OpenMP)"
    )
    args = parser.parse_args()

    # The same thread count for every model: torch (GrowNet's n_threads) and
    # OpenMP/BLAS (HistGB, LogReg, Ridge) through threadpoolctl. On a shared
    # 2-core machine, 2 OpenMP threads made HistGB up to 10x slower (spinning
    # threads under load), which would flatter GrowNet.
    threadpool_limits(args.threads)
    openmp = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]
    blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    print(
        f"torch {torch.__version__}; threads: GrowNet torch n_threads={args.threads}, "
        f"OpenMP {openmp[0] if openmp else '?'}, BLAS {blas[0] if blas else '?'}; "
        f"CPUs: {os.cpu_count()}; load average at start: {os.getloadavg()[0]:.1f}\n"
    )
    # Warm-up: torch's first fit in a process pays one-off initialisation.
    X, y = load_wine(return_X_y=True)
    GrowNetClassifier(n_estimators=2, n_threads=args.threads).fit(X, y)
    tic = time.perf_counter()
    compare(not args.no_large, args.threads)
    growth(args.threads)
    print(
        f"\ntotal {time.perf_counter() - tic:.0f}s; "
        f"load average at end: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
