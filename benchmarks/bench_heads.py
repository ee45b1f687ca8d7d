"""Heads vs their scikit-learn counterparts: fit+predict time and accuracy.

    python benchmarks/bench_heads.py [--repeats 5] [--threads 1]

Rows: ``PrototypeClassifier`` vs ``NearestCentroid``;
``KNNInterpolatedClassifier(knn_weight=1)`` (the pure kNN part) vs
``KNeighborsClassifier(n_neighbors=16, metric="cosine", algorithm="brute")``;
and the default interpolated head. Accuracy of every head is shown next to a
standardised ``LogisticRegression`` on the same features. Times are the best of
``--repeats`` runs of fit + predict (predict on the held-out 25 %), head and
counterpart alternating so that both see the same machine load, with the
BLAS thread pool limited to ``--threads`` for every estimator alike (one
thread is the fast setting on the shared 2-core machines of this project).
"""

import argparse
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from sklearn_layers.heads.neighbours._knn import KNNInterpolatedClassifier
from sklearn_layers.heads.neighbours._prototype import PrototypeClassifier


def _datasets():
    X, y = make_classification(
        n_samples=20_000,
        n_features=512,
        n_informative=48,
        n_redundant=0,
        n_classes=10,
        n_clusters_per_class=1,
        random_state=0,
    )
    yield "synthetic 20000x512 float32", X.astype(np.float32), y
    X, y = load_digits(return_X_y=True)
    yield "digits 1797x64 (real)", X, y


def _time(estimator, X_tr, y_tr, X_te):
    start = time.perf_counter()
    pred = estimator.fit(X_tr, y_tr).predict(X_te)
    return time.perf_counter() - start, pred


def _race(head, ref, X_tr, y_tr, X_te, repeats):
    """Best fit+predict time of each; runs alternate so both see the same load."""
    t_head = t_ref = np.inf
    p_head = p_ref = None
    for _ in range(repeats):
        t, p_head = _time(head, X_tr, y_tr, X_te)
        t_head = min(t_head, t)
        if ref is not None:
            t, p_ref = _time(ref, X_tr, y_tr, X_te)
            t_ref = min(t_ref, t)
    return t_head, p_head, t_ref, p_ref


def main(repeats=5, threads=1):
    pairs = [
        ("PrototypeClassifier()", PrototypeClassifier(), "NearestCentroid()",
         NearestCentroid()),
        ("PrototypeClassifier(euclidean)", PrototypeClassifier(metric="euclidean"),
         "NearestCentroid()", NearestCentroid()),
        ("KNNInterpolated(knn_weight=1)", KNNInterpolatedClassifier(knn_weight=1.0),
         "KNeighbors(16, cosine, brute)",
         KNeighborsClassifier(n_neighbors=16, metric="cosine", algorithm="brute")),
        ("KNNInterpolated() (lambda=0.5)", KNNInterpolatedClassifier(), None, None),
    ]
    header = (
        f"{'data':<28} {'head':<31} {'head s':>7} {'sklearn counterpart':<30} "
        f"{'skl s':>7} {'ratio':>6} {'head acc':>8} {'skl acc':>8} {'LR acc':>7}"
    )
    print(f"BLAS threads: {threads}; best of {repeats} fit+predict runs\n")
    print(header)
    print("-" * len(header))
    with threadpool_limits(limits=threads):
        for data_name, X, y in _datasets():
            X_tr, X_te, y_tr, y_te = train_test_split(
                X, y, test_size=0.25, stratify=y, random_state=0
            )
            lr = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
            lr_acc = np.mean(lr.fit(X_tr, y_tr).predict(X_te) == y_te)
            for head_name, head, ref_name, ref in pairs:
                t_head, p_head, t_ref, p_ref = _race(
                    head, ref, X_tr, y_tr, X_te, repeats
                )
                acc_head = np.mean(p_head == y_te)
                if ref is None:
                    ref_cols = f"{'-':<30} {'-':>7} {'-':>6} {acc_head:8.4f} {'-':>8}"
                else:
                    ref_cols = (
                        f"{ref_name:<30} {t_ref:7.3f} {t_head / t_ref:6.2f} "
                        f"{acc_head:8.4f} {np.mean(p_ref == y_te):8.4f}"
                    )
                print(
                    f"{data_name:<28} {head_name:<31} {t_head:7.3f} {ref_cols} "
                    f"{lr_acc:7.4f}"
                )
    print("\nratio = head time / sklearn time (below 1: the head is faster)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*zero standard deviation.*")
    main(repeats=args.repeats, threads=args.threads)
