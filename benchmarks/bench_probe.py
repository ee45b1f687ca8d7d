"""The linear probes vs the scikit-learn pipelines they replace, on every benchmarked shape.

    python benchmarks/bench_probe.py [--repeats 3] [--skip-synthetic] [--skip-sweep]

References: ``make_pipeline(StandardScaler(), LogisticRegression(C=C,
max_iter=1000))`` for :class:`LinearProbeClassifier` (the model it fits) and
``make_pipeline(StandardScaler(), RidgeCV(alphas))`` for
:class:`LinearProbeRegressor`. Both sides run on one thread (torch, BLAS and
OpenMP alike), fits alternating so that both see the same machine load;
times are process CPU seconds (``time.process_time``), best of
``--repeats``: with one thread that is the work a fit does, while wall time
on a shared machine also counts waiting for other processes. Ratios are
reference time / probe time, so > 1 means the probe is faster.

Workloads (every feature matrix is float32, as the transformer returns it):

1. **Correlated 20,000 x 512**, 10 classes: generated deterministically (32
   latent factors, decaying loadings, per-feature scales and offsets over
   orders of magnitude); accuracy on 5,000 held-out rows.
2. **Tweets 2,729 x 384**: all-MiniLM-L6-v2 mean-pooled features of every
   layer (embeddings and the 6 encoder layers) on the election tweets of
   :func:`sklearn_layers.datasets.load_election_tweets` (train January-June
   less 400 held-out rows of the same months, on which accuracy is measured),
   and the first **200 x 384** rows of encoder layer 1.
3. **Digits CNN layers**: :func:`sklearn_layers.models.load_digit_cnn` on
   :func:`sklearn_layers.datasets.load_digits_28x28`, mean-pooled
   ``conv_layers.2/5/8`` (32, 64, 128 features) and ``fc_layers.1`` (256),
   1,797 rows, 10 classes, 5-fold CV time and accuracy; and the **899 x 256**
   ``fc_layers.1`` features of the first half of the digits (accuracy on the
   other half).
4. **Sweep**: the probe fitting of a layer sweep on the tweets' 7 layers x 5
   folds x C in {0.1, 1, 10} (105 fits): scikit-learn fits a fresh pipeline
   each time; the probe runs ``linear_probe_path`` per layer.
5. **Ridge**: :class:`LinearProbeRegressor` against ``RidgeCV`` with the same
   7 alphas, on the tweets' encoder layer 1 predicting the day of the year,
   and on correlated 20,000 x 512 rows with a linear target plus noise
   (R^2 on held-out rows, chosen alpha).

The network features are extracted once (about a minute) and kept in
``<tmpdir>/sklearn_layers_bench_probe_features.npz``; later runs read it.
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
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers.heads import (  # noqa: E402
    LinearProbeClassifier,
    LinearProbeRegressor,
    linear_probe_path,
)

SWEEP_CS = (0.1, 1.0, 10.0)
ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
FEATURES = Path(tempfile.gettempdir()) / "sklearn_layers_bench_probe_features.npz"
TWEET_LAYERS = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
DIGIT_LAYERS = ["conv_layers.2", "conv_layers.5", "conv_layers.8", "fc_layers.1"]


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


def network_features():
    """Tweets' MiniLM and digits' CNN features, extracted once into FEATURES."""
    if FEATURES.exists():
        return dict(np.load(FEATURES, allow_pickle=False))
    from sklearn_layers import LayerFeatureTransformer
    from sklearn_layers.datasets import load_digits_28x28, load_election_tweets
    from sklearn_layers.models import load_digit_cnn, load_minilm

    start = time.perf_counter()
    frame = load_election_tweets().frame
    # a fixed order whatever order the loader returns rows in
    frame = frame.sort_values(["time", "text"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(0)
    early = rng.permutation(frame.index[frame["time"].dt.month <= 6].to_numpy())
    test, train = early[:400], early[400:]
    model, tokenizer = load_minilm()
    extractor = LayerFeatureTransformer(
        model, layers=TWEET_LAYERS, pooling="mean", tokenizer=tokenizer,
        batch_size=64, cache=None, n_threads=1,
    )
    texts = frame["text"].to_numpy()
    extractor.fit(list(texts[:2]))
    X_train = extractor.transform(list(texts[train]))
    X_test = extractor.transform(list(texts[test]))
    arrays = {
        "tweets_y_train": frame["author"].to_numpy()[train].astype(str),
        "tweets_y_test": frame["author"].to_numpy()[test].astype(str),
        "tweets_day_train": frame["time"].dt.dayofyear.to_numpy()[train].astype(float),
    }
    for name, cols in extractor.feature_slices_.items():
        arrays[f"tweets_{name}_train"] = X_train[:, cols]
        arrays[f"tweets_{name}_test"] = X_test[:, cols]
    images, labels = load_digits_28x28(return_X_y=True)
    extractor = LayerFeatureTransformer(
        load_digit_cnn(), layers=DIGIT_LAYERS, pooling="mean", cache=None, n_threads=1,
    ).fit(images[:2])
    F = extractor.transform(images)
    for name, cols in extractor.feature_slices_.items():
        arrays[f"digits_{name}"] = F[:, cols]
    arrays["digits_y"] = labels
    np.savez(FEATURES, **arrays)
    print(f"features extracted in {time.perf_counter() - start:.0f} s into {FEATURES}\n")
    return arrays


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
        "probe s": t_probe, "sklearn s": t_ref,
        "probe acc": probe.score(X_test, y_test), "sklearn acc": ref.score(X_test, y_test),
        "iters": f"{probe.n_iter_} / {int(ref[-1].n_iter_[0])}",
    }


def race_cv(X, y, repeats, n_splits=5):
    """5-fold CV: total fit time (best of `repeats`) and mean accuracy, both ways."""
    splits = list(StratifiedKFold(n_splits, shuffle=True, random_state=0).split(X, y))
    t_probe = t_ref = np.inf
    for _ in range(repeats):
        probes, refs = [], []
        t_p = t_r = 0.0
        for train, _ in splits:
            probes.append(LinearProbeClassifier())
            t_p += _timed_fit(probes[-1], X[train], y[train])
            refs.append(reference())
            t_r += _timed_fit(refs[-1], X[train], y[train])
        t_probe, t_ref = min(t_probe, t_p), min(t_ref, t_r)
    return {
        "probe s": t_probe, "sklearn s": t_ref,
        "probe acc": np.mean([m.score(X[t], y[t]) for m, (_, t) in zip(probes, splits)]),
        "sklearn acc": np.mean([m.score(X[t], y[t]) for m, (_, t) in zip(refs, splits)]),
        "iters": f"{probes[0].n_iter_} / {int(refs[0][-1].n_iter_[0])}",
    }


def sweep(layers):
    """Probe fitting of a layers x 5 folds x 3 C sweep, both ways."""
    t_probe = t_ref = 0.0
    worst = 0.0
    for X, y in layers:
        splits = list(StratifiedKFold(5, shuffle=True, random_state=0).split(X, y))
        start = time.process_time()
        fits = linear_probe_path(LinearProbeClassifier(), X, y, splits=splits, Cs=SWEEP_CS)
        t_probe += time.process_time() - start
        for C in SWEEP_CS:
            ours, theirs = [], []
            for fit, (train, test) in zip([f for f in fits if f["C"] == C], splits):
                ours.append(fit["estimator"].score(X[test], y[test]))
                ref = clone(reference(C))
                t_ref += _timed_fit(ref, X[train], y[train])
                theirs.append(ref.score(X[test], y[test]))
            worst = max(worst, abs(np.mean(ours) - np.mean(theirs)))
    return t_probe, t_ref, worst


def race_ridge(X, y, repeats):
    """LinearProbeRegressor vs StandardScaler + RidgeCV (same alphas), R^2 on the last fifth."""
    n_train = len(X) * 4 // 5
    ours = LinearProbeRegressor(alphas=ALPHAS)
    ref = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    t_ours = t_ref = np.inf
    for _ in range(repeats):
        t_ours = min(t_ours, _timed_fit(ours, X[:n_train], y[:n_train]))
        t_ref = min(t_ref, _timed_fit(ref, X[:n_train], y[:n_train]))
    return {
        "probe s": t_ours, "sklearn s": t_ref,
        "probe acc": ours.score(X[n_train:], y[n_train:]),
        "sklearn acc": ref.score(X[n_train:], y[n_train:]),
        "iters": f"alpha {ours.alpha_:g} / {ref[-1].alpha_:g}",
    }


def _row(name, result):
    return [
        name, f"{result['probe s']:.3f}", f"{result['sklearn s']:.3f}",
        f"{result['sklearn s'] / result['probe s']:.2f}x",
        f"{result['probe acc']:.4f}", f"{result['sklearn acc']:.4f}",
        f"{100 * (result['probe acc'] - result['sklearn acc']):+.2f}", result["iters"],
    ]


def main(repeats=3, synthetic=True, with_sweep=True):
    headers = ["workload", "probe s", "sklearn s", "speed-up", "probe score",
               "sklearn score", "delta (points)", "iters / alpha probe / sklearn"]
    rows = []
    if synthetic:
        X, y = correlated_features(25_000)
        rows.append(_row("correlated 20000x512, 10 classes",
                         race(X[:20_000], y[:20_000], X[20_000:], y[20_000:], repeats)))
    data = network_features()
    y_train, y_test = data["tweets_y_train"], data["tweets_y_test"]
    for name in TWEET_LAYERS:
        rows.append(_row(f"tweets {name} 2729x384", race(
            data[f"tweets_{name}_train"], y_train, data[f"tweets_{name}_test"], y_test,
            repeats)))
    layer1 = data["tweets_encoder.layer.1_train"]
    rows.append(_row("tweets encoder.layer.1 200x384", race(
        layer1[:200], y_train[:200], data["tweets_encoder.layer.1_test"], y_test, repeats)))
    y_digits = data["digits_y"]
    for name in DIGIT_LAYERS:
        F = data[f"digits_{name}"]
        rows.append(_row(f"digits {name} {F.shape[0]}x{F.shape[1]}, 5-fold",
                         race_cv(F, y_digits, repeats)))
    fc = data["digits_fc_layers.1"]
    rows.append(_row("digits fc_layers.1 899x256", race(
        fc[:899], y_digits[:899], fc[899:], y_digits[899:], repeats)))
    rows.append(_row("ridge: tweets encoder.layer.1 -> day (R^2)", race_ridge(
        layer1, data["tweets_day_train"], repeats)))
    if synthetic:
        X, _ = correlated_features(20_000)
        target = X.astype(np.float64) @ np.random.default_rng(1).normal(size=X.shape[1])
        target += np.random.default_rng(2).normal(scale=target.std(), size=len(target))
        rows.append(_row("ridge: correlated 20000x512 (R^2)", race_ridge(X, target, repeats)))
    print_table(rows, headers)
    if with_sweep:
        layers = [(data[f"tweets_{name}_train"], y_train) for name in TWEET_LAYERS]
        t_probe, t_ref, worst = sweep(layers)
        print(f"\nsweep, 7 tweet layers x 5 folds x C in {SWEEP_CS} (105 fits): probe "
              f"{t_probe:.2f} s, sklearn {t_ref:.2f} s, speed-up {t_ref / t_probe:.2f}x; "
              f"largest |delta| of mean CV accuracy over (layer, C): "
              f"{100 * worst:.2f} points")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-sweep", action="store_true")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*zero standard deviation.*")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            main(args.repeats, not args.skip_synthetic, not args.skip_sweep)
    finally:
        torch.set_num_threads(previous)
