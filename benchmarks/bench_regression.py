"""Regression: a layer sweep on a continuous target (the rotation angle of a digit).

    python benchmarks/bench_regression.py [--rows 1797] [--repeats 3]

Scenario: :func:`sklearn_layers.models.load_digit_cnn` (trained on upright
MNIST digits) on :func:`sklearn_layers.datasets.load_digits_28x28`, each image
rotated about its centre by an angle drawn uniformly from [-45, 45] degrees
(``scipy.ndimage.rotate``, bilinear, background outside the image, seed 0);
the target is that angle. The angle is a property of each image we set
ourselves, so the target is exact; a classifier trained to ignore small
rotations should keep less of it in its last layers than in its
convolutions, so the layer choice matters. (A scale factor would be the
other candidate; the digits are already rescaled from 8 x 8, so further
scaling mostly blurs them.)

Printed, in one run, with one torch thread and one BLAS thread:

(a) per layer (every block, default pooling, extracted once), 5-fold CV r2 of
    :class:`LinearProbeRegressor` and of ``make_pipeline(StandardScaler(),
    RidgeCV(alphas))`` with the same alphas, their fit times (process CPU
    seconds, best of ``--repeats``, summed over the 5 folds) and the ratio
    RidgeCV time / probe time (> 1: the probe is faster);
(b) the layer ``IntermediateLayerRegressor(LayerFeatureTransformer(model),
    layers="all", cv=5)`` chooses on a training 4/5 of the rows, and its r2 on
    the held-out 1/5 against the same probe on the last layer;
(c) ``layer_sweep`` on the same target with its default estimators (the ridge
    probe), 5-fold CV.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.base import clone
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import (  # noqa: E402
    IntermediateLayerRegressor,
    LayerFeatureTransformer,
    LinearProbeRegressor,
    layer_sweep,
)
from sklearn_layers.datasets import load_digits_28x28  # noqa: E402
from sklearn_layers.models import load_digit_cnn  # noqa: E402

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)
MAX_ANGLE = 45.0


def rotated_digits(n_rows, seed=0):
    """The first ``n_rows`` digits, each rotated by a uniform angle, and the angles."""
    images, _ = load_digits_28x28(return_X_y=True)
    images = images[:n_rows]
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-MAX_ANGLE, MAX_ANGLE, size=len(images))
    background = float(images.min())  # the normalised value of a blank pixel
    rotated = np.stack([
        ndimage.rotate(img[0], angle, reshape=False, order=1, mode="constant",
                       cval=background)
        for img, angle in zip(images, angles)
    ])[:, None].astype(np.float32)
    return rotated, angles


def cv_score_and_time(estimator, X, y, splits, repeats):
    """Mean r2 over the folds and the summed fit time (best of ``repeats``)."""
    best = np.inf
    for _ in range(repeats):
        total, scores = 0.0, []
        for train, test in splits:
            est = clone(estimator)
            start = time.process_time()
            est.fit(X[train], y[train])
            total += time.process_time() - start
            scores.append(est.score(X[test], y[test]))
        best = min(best, total)
    return float(np.mean(scores)), best


def main(n_rows=1797, repeats=3):
    torch.set_num_threads(1)
    X_img, y = rotated_digits(n_rows)
    model = load_digit_cnn()
    print(f"torch {torch.__version__}, threads=1, {len(y)} digits rotated by "
          f"U(-45, 45) degrees; target: the angle (std {y.std():.1f} degrees)")

    start = time.perf_counter()
    extractor = LayerFeatureTransformer(model, layers="all", cache=None)
    features = extractor.fit_transform(X_img)
    elapsed = time.perf_counter() - start
    print(f"extracted {len(extractor.layer_names_)} layers once in {elapsed:.1f} s")

    # (a) the probe vs StandardScaler + RidgeCV, per layer
    splits = list(KFold(5).split(features))
    rows = []
    ours_est = LinearProbeRegressor(alphas=ALPHAS)
    ref_est = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    ratios, r2_gaps = [], []
    for name in extractor.layer_names_:
        Xl = features[:, extractor.feature_slices_[name]]
        r2_ours, t_ours = cv_score_and_time(ours_est, Xl, y, splits, repeats)
        r2_ref, t_ref = cv_score_and_time(ref_est, Xl, y, splits, repeats)
        ratios.append(t_ref / t_ours)
        r2_gaps.append(abs(r2_ours - r2_ref))
        rows.append([name, Xl.shape[1], f"{r2_ours:.4f}", f"{r2_ref:.4f}",
                     f"{t_ours:.3f}", f"{t_ref:.3f}", f"{t_ref / t_ours:.2f}x"])
    print("\n(a) 5-fold CV r2 and fit time (CPU s, 5 fits, best of "
          f"{repeats}) per layer, alphas {ALPHAS}")
    print_table(rows, ["layer", "features", "probe r2", "RidgeCV r2", "probe s",
                       "RidgeCV s", "RidgeCV/probe"])
    print(f"time ratio RidgeCV/probe: median {np.median(ratios):.2f}x, "
          f"min {np.min(ratios):.2f}x, max {np.max(ratios):.2f}x; "
          f"largest |r2 difference| {max(r2_gaps):.1e}")

    # (b) IntermediateLayerRegressor on 4/5 of the rows, r2 on the last 1/5
    n_train = len(y) * 4 // 5
    start = time.perf_counter()
    ilr = IntermediateLayerRegressor(LayerFeatureTransformer(model), layers="all", cv=5)
    ilr.fit(X_img[:n_train], y[:n_train])
    fit_s = time.perf_counter() - start
    held_out = ilr.score(X_img[n_train:], y[n_train:])
    last = extractor.layer_names_[-1]
    Xlast = features[:, extractor.feature_slices_[last]]
    last_r2 = LinearProbeRegressor().fit(Xlast[:n_train], y[:n_train]).score(
        Xlast[n_train:], y[n_train:])
    print(f"\n(b) IntermediateLayerRegressor (cv=5, {n_train} training rows, "
          f"fit {fit_s:.1f} s): chose {ilr.best_layer_} (CV r2 {ilr.best_score_:.4f}); "
          f"held-out r2 on "
          f"{len(y) - n_train} rows {held_out:.4f} vs last layer {last} {last_r2:.4f}")

    # (c) layer_sweep with its default estimators on the continuous target
    table = layer_sweep(LayerFeatureTransformer(model), X_img, y, cv=5, cost_sample=0)
    print("\n(c) layer_sweep (default estimators), 5-fold CV")
    print_table(
        [[r.layer, r.head, r.split, f"{r.score:.4f}", f"{r.score_std:.4f}",
          f"{r.forward_share:.3f}"] for r in table.itertuples()],
        ["layer", "head", "split", "score (r2)", "std", "forward share"],
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1797,
                        help="digits used (at most 1797)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats per fit")
    args = parser.parse_args()
    with threadpool_limits(1):
        main(args.rows, args.repeats)
