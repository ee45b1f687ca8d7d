"""A grid search over layers and heads: the activation cache against the alternatives.

Run: ``.venv/bin/python benchmarks/bench_gridsearch.py [--rows 5000] [--width 16]
[--model resnet|staged|both]``

Two networks on 3x32x32 inputs, 4 layers x 3 heads x 3 folds (+ refit): a
ResNet-18-style CNN searched by its block names (``layer1.1`` ...), and a CNN whose
stages are user-named ``nn.Sequential`` children searched by those names
(``block1`` ... ``block4``, which the block list calls ``block1.2`` ...):

- ``cache="memory"`` (the default),
- ``cache=None`` (every candidate and fold re-runs the network),
- ``cache=None`` inside ``Pipeline(memory=joblib.Memory(...))`` (scikit-learn's own
  caching, which never hits for a step that holds a torch module),
- the floor: one forward pass over X for all four layers, then the same grid of
  heads on the precomputed features.

Prints wall times, the rows that went through the network (a forward pre-hook on the
first block counts them) and the ratios. Targets: cached <= 1.3 x floor, and at least
L x K times fewer rows than ``cache=None``.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import (  # noqa: E402
    KNNInterpolatedClassifier,
    LayerFeatureTransformer,
    MemoryCache,
    PrototypeClassifier,
    default_probe,
)
from sklearn_layers.utils.toy import make_resnet18, make_staged_cnn  # noqa: E402

NETWORKS = {
    "resnet": ("ResNet-18", ["layer1.1", "layer2.1", "layer3.1", "layer4.1"]),
    "staged": ("user-named stages", ["block1", "block2", "block3", "block4"]),
}


class ColumnBlock(TransformerMixin, BaseEstimator):
    """Select one layer's columns from a precomputed all-layer matrix (the floor)."""

    def __init__(self, layers=None, slices=None):
        self.layers = layers
        self.slices = slices

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X[:, self.slices[self.layers]]


def heads():
    return [default_probe(), PrototypeClassifier(), KNNInterpolatedClassifier()]


def make_data(n, seed=0):
    """Images whose class shows in a mid-level texture: learnable from frozen features."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    X = rng.normal(size=(n, 3, 32, 32)).astype(np.float32)
    stripes = np.sin(np.arange(32) * np.pi / 4).astype(np.float32)
    X[y == 1] += 0.6 * stripes[None, None, None, :]
    X[y == 2] += 0.6 * stripes[None, None, :, None]
    return X, y


class RowCounter:
    """Forward pre-hook summing the rows that reach the first layer (picklable, so
    joblib.Memory can hash the module while it is registered)."""

    def __init__(self):
        self.rows = 0

    def __call__(self, module, args):
        self.rows += args[0].shape[0]


def first_conv(net):
    return next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))


def run_grid(net, layers, X, y, *, cache, memory=None):
    counter = RowCounter()
    handle = first_conv(net).register_forward_pre_hook(counter)
    pipe = Pipeline(
        [("features", LayerFeatureTransformer(net, cache=cache, batch_size=256)),
         ("head", default_probe())],
        memory=memory,
    )
    grid = GridSearchCV(pipe, {"features__layers": layers, "head": heads()},
                        cv=KFold(3, shuffle=True, random_state=0))
    start = time.perf_counter()
    try:
        grid.fit(X, y)
    finally:
        handle.remove()
    return time.perf_counter() - start, counter.rows, grid.best_params_, grid.best_score_


def run_floor(net, layers, X, y):
    start = time.perf_counter()
    lft = LayerFeatureTransformer(net, layers=layers, cache=None, batch_size=256).fit(X[:1])
    F = lft.transform(X)
    pipe = Pipeline([("features", ColumnBlock(slices=lft.feature_slices_)),
                     ("head", default_probe())])
    grid = GridSearchCV(pipe, {"features__layers": layers, "head": heads()},
                        cv=KFold(3, shuffle=True, random_state=0))
    forward = time.perf_counter() - start
    grid.fit(F, y)
    return time.perf_counter() - start, forward, len(X), grid.best_score_


def bench(net, name, layers, X, y, skip_uncached):
    print(f"{name}, {len(X)} rows of 3x32x32, {len(layers)} layers {layers} x 3 heads "
          f"x 3 folds, torch threads={torch.get_num_threads()}")
    floor, forward, floor_rows, floor_score = run_floor(net, layers, X, y)
    rows = [["floor: one forward + heads", f"{floor:.1f}", floor_rows, "1.00",
             f"{floor_score:.3f}"]]
    print(rows[-1], flush=True)
    cached, cached_rows, best, score = run_grid(net, layers, X, y,
                                                cache=MemoryCache(2 << 30))
    rows.append(["cache='memory'", f"{cached:.1f}", cached_rows, f"{cached / floor:.2f}",
                 f"{score:.3f}"])
    print(rows[-1], flush=True)
    if not skip_uncached:
        uncached, uncached_rows, _, s2 = run_grid(net, layers, X, y, cache=None)
        rows.append(["cache=None", f"{uncached:.1f}", uncached_rows,
                     f"{uncached / floor:.2f}", f"{s2:.3f}"])
        print(rows[-1], flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            jm, jm_rows, _, s3 = run_grid(net, layers, X, y, cache=None,
                                          memory=joblib.Memory(tmp, verbose=0))
        rows.append(["cache=None + Pipeline(memory=joblib.Memory)", f"{jm:.1f}", jm_rows,
                     f"{jm / floor:.2f}", f"{s3:.3f}"])
    print()
    print_table(rows, ["run", "wall s", "rows through network", "time / floor", "best CV score"])
    print(f"one forward pass over X ({len(layers)} layers): {forward:.1f} s; best {best}")
    if not skip_uncached:
        print(f"cache=None / cached: time {uncached / cached:.1f}x, rows "
              f"{uncached_rows / cached_rows:.1f}x (L x K = {len(layers) * 3})")
    print()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--width", type=int, default=16, help="base width (64 = full)")
    parser.add_argument("--model", choices=["resnet", "staged", "both"], default="both")
    parser.add_argument("--skip-uncached", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    X, y = make_data(args.rows)
    makers = {"resnet": make_resnet18, "staged": make_staged_cnn}
    chosen = ["resnet", "staged"] if args.model == "both" else [args.model]
    for key in chosen:
        name, layers = NETWORKS[key]
        net = makers[key](n_classes=3, width=args.width)
        bench(net, f"{name} (width {args.width})", layers, X, y, args.skip_uncached)


if __name__ == "__main__":
    main()
