"""LinearProbeClassifier vs a standardised scikit-learn LogisticRegression.

    python benchmarks/bench_probe.py [--repeats 3] [--skip-synthetic] [--skip-tweets]

The reference is ``make_pipeline(StandardScaler(), LogisticRegression(C=C,
max_iter=1000))``, the model the probe fits. Both run on one thread (torch,
BLAS and OpenMP alike), side by side, fits alternating so that both see the
same machine load. Times are process CPU seconds (``time.process_time``):
with one thread that is the work a fit does, while wall time on a shared
machine also counts waiting for other processes. Three workloads:

1. **Correlated features:** 20,000 x 512 float32 rows, 10 classes, generated
   deterministically (32 latent factors with decaying loadings plus noise,
   then per-feature scales and offsets spanning orders of magnitude); per-fit
   time (best of ``--repeats``) and accuracy on 5,000 held-out rows.
2. **Tweets:** all-MiniLM-L6-v2 mean-pooled features of every layer (the
   embeddings and the 6 encoder layers, 384 each) on the demo's election
   tweets (train January-June, 2,729 rows; test: 400 held-out rows of the
   same months). The features are extracted once by LayerFeatureTransformer
   into a DiskCache under the temporary directory, so later runs only read
   them. Per-fit time and accuracy for each layer.
3. **Sweep:** the probe fitting of a layer sweep on those features, 7 layers
   x 5 folds (StratifiedKFold) x C in {0.1, 1, 10}: scikit-learn fits a fresh
   pipeline each time; the probe runs ``linear_probe_path`` per layer
   (whitening and warm starts shared across folds and values of C). Total
   time, and the largest difference in mean CV accuracy over (layer, C).

Targets: >= 2x faster per fit, >= 5x faster for the sweep, accuracy within
0.5 points.
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import DiskCache, LayerFeatureTransformer  # noqa: E402
from sklearn_layers.heads import LinearProbeClassifier, linear_probe_path  # noqa: E402

SWEEP_CS = (0.1, 1.0, 10.0)


def correlated_features(n_samples, n_features=512, n_classes=10, seed=0):
    """Correlated, anisotropic features: what layer activations look like.

    32 latent factors (class means plus unit noise) mixed into all features
    through loadings that decay from 2 to 0.2, plus independent noise; then
    each feature is scaled by a log-normal factor and offset.
    """
    rng = np.random.default_rng(seed)
    n_factors = 32
    y = rng.integers(0, n_classes, n_samples)
    centers = rng.normal(scale=0.5, size=(n_classes, n_factors))
    factors = centers[y] + rng.normal(size=(n_samples, n_factors))
    loadings = rng.normal(size=(n_factors, n_features))
    loadings *= np.linspace(2.0, 0.2, n_factors)[:, None]
    X = factors @ loadings + rng.normal(size=(n_samples, n_features))
    scales = rng.lognormal(0.0, 1.0, size=n_features)
    offsets = rng.normal(0.0, 3.0, size=n_features) * scales
    return (X * scales + offsets).astype(np.float32), y


def tweets_features():
    """MiniLM features of every layer for the demo's train and ID-test tweets."""
    from sklearn_layers.demo import _assets

    model, tokenizer = _assets.load_minilm()
    tweets = _assets.load_election_tweets()
    rng = np.random.default_rng(0)  # the demo's split (tweets_scenario, seed=0)
    month = tweets["time"].dt.month
    early = rng.permutation(tweets[month <= 6].index.to_numpy())
    id_test, train = early[:400], early[400:]
    layers = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
    cache = DiskCache(Path(tempfile.gettempdir()) / "sklearn_layers_bench_probe")
    extractor = LayerFeatureTransformer(
        model, layers=layers, pooling="mean", tokenizer=tokenizer,
        batch_size=64, cache=cache, n_threads=1,
    )
    texts = tweets["text"].to_numpy()
    authors = tweets["author"].to_numpy()
    start = time.process_time()
    extractor.fit(list(texts[train]))
    X_train = extractor.transform(list(texts[train]))
    X_test = extractor.transform(list(texts[id_test]))
    print(f"tweets features: {X_train.shape[0]} + {X_test.shape[0]} rows, "
          f"{len(layers)} layers, {time.process_time() - start:.1f} s "
          f"(cache hits {cache._front.hits if cache._front else '?'})\n")
    slices = extractor.feature_slices_
    return {
        name: (X_train[:, s], authors[train], X_test[:, s], authors[id_test])
        for name, s in slices.items()
    }


def reference(C=1.0):
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=1000))


def _timed_fit(estimator, X, y):
    start = time.process_time()
    estimator.fit(X, y)
    return time.process_time() - start


def race(X_train, y_train, X_test, y_test, repeats):
    """Best fit time, accuracy and iterations of the probe and the reference."""
    probe, ref = LinearProbeClassifier(), reference()
    t_probe = t_ref = np.inf
    for _ in range(repeats):
        t_probe = min(t_probe, _timed_fit(probe, X_train, y_train))
        t_ref = min(t_ref, _timed_fit(ref, X_train, y_train))
    return {
        "probe s": t_probe,
        "sklearn s": t_ref,
        "speed-up": t_ref / t_probe,
        "probe acc": probe.score(X_test, y_test),
        "sklearn acc": ref.score(X_test, y_test),
        "iters": f"{probe.n_iter_} / {int(ref[-1].n_iter_[0])}",
    }


def sweep(features):
    """Probe fitting of a 7 layers x 5 folds x 3 C sweep, both ways."""
    t_probe = t_ref = 0.0
    worst = 0.0
    for X, y, _, _ in features.values():
        splits = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
        start = time.process_time()
        fits = linear_probe_path(LinearProbeClassifier(), X, y, splits=splits,
                                 Cs=SWEEP_CS)
        t_probe += time.process_time() - start
        for C in SWEEP_CS:
            ours, theirs = [], []
            for fit, (train, test) in zip(
                [f for f in fits if f["C"] == C], splits
            ):
                ours.append(fit["estimator"].score(X[test], y[test]))
                ref = clone(reference(C))
                t_ref += _timed_fit(ref, X[train], y[train])
                theirs.append(ref.score(X[test], y[test]))
            worst = max(worst, abs(np.mean(ours) - np.mean(theirs)))
    return t_probe, t_ref, worst


def _row(name, result):
    return [
        name,
        f"{result['probe s']:.3f}",
        f"{result['sklearn s']:.3f}",
        f"{result['speed-up']:.1f}x",
        f"{result['probe acc']:.4f}",
        f"{result['sklearn acc']:.4f}",
        f"{100 * (result['probe acc'] - result['sklearn acc']):+.2f}",
        result["iters"],
    ]


def main(repeats=3, synthetic=True, tweets=True):
    headers = ["workload", "probe s", "sklearn s", "speed-up", "probe acc",
               "sklearn acc", "delta (points)", "iters probe / sklearn"]
    rows = []
    if synthetic:
        X, y = correlated_features(25_000)
        rows.append(_row("correlated 20000x512, 10 classes",
                         race(X[:20_000], y[:20_000], X[20_000:], y[20_000:], repeats)))
    if tweets:
        features = tweets_features()
        for name, (X_tr, y_tr, X_te, y_te) in features.items():
            rows.append(_row(f"tweets {name} 2729x384", race(X_tr, y_tr, X_te, y_te,
                                                             repeats)))
    print_table(rows, headers)
    if tweets:
        t_probe, t_ref, worst = sweep(features)
        print(f"\nsweep, 7 layers x 5 folds x C in {SWEEP_CS} (105 fits): probe "
              f"{t_probe:.2f} s, sklearn {t_ref:.2f} s, "
              f"speed-up {t_ref / t_probe:.1f}x; "
              f"largest |delta| of mean CV accuracy over (layer, C): "
              f"{100 * worst:.2f} points")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-tweets", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*zero standard deviation.*")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            main(args.repeats, not args.skip_synthetic, not args.skip_tweets)
    finally:
        torch.set_num_threads(previous)
