"""Extraction throughput against the raw forward pass, and the cost of early exit.

Run: ``.venv/bin/python benchmarks/bench_extraction.py`` (one torch thread).

Prints, per network: raw ``model(x)`` time over the data set at the same batch
size, LayerFeatureTransformer time (cache off) for every block and for the
penultimate layer, their throughput ratios (target >= 0.95), and the time of
extracting only the first block as a fraction of the full forward.

Then ``precision="bfloat16"`` against ``"float32"`` (every block, cache off,
best of 5 interleaved rounds) on both networks, with the smallest cosine of
the bfloat16 features to the float32 ones (``precision_drift``).
"""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, print_table  # noqa: E402

from sklearn_layers import LayerFeatureTransformer  # noqa: E402
from sklearn_layers.utils.toy import make_resnet18, make_transformer_encoder  # noqa: E402


def raw_forward(model, X, batch_size):
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            model(torch.as_tensor(X[start : start + batch_size]))


def bench(name, model, X, batch_size, first_block, rounds=5):
    """Interleave the runs round by round and keep each one's best time, so that
    a burst of load on this shared machine hits all of them alike."""

    def extract(layers):
        lft = LayerFeatureTransformer(model, layers=layers, batch_size=batch_size, cache=None)
        lft.fit(X[:2])
        return lambda: lft.transform(X)

    runs = {
        "raw": lambda: raw_forward(model, X, batch_size),
        "all": extract("all"),
        "penultimate": extract("penultimate"),
        "first": extract(first_block),
    }
    best = {key: float("inf") for key in runs}
    for _ in range(rounds):
        for key, func in runs.items():
            best[key] = min(best[key], best_time(func, repeat=1))
    raw = best["raw"]
    return [
        name,
        f"{raw:.2f}",
        f"{best['all']:.2f}",
        f"{raw / best['all']:.3f}",
        f"{raw / best['penultimate']:.3f}",
        f"{best['first'] / raw:.3f}",
    ]


def precision_row(name, model, X, batch_size, rounds=5):
    lfts = {p: LayerFeatureTransformer(model, layers="all", batch_size=batch_size,
                                       cache=None, precision=p).fit(X[:2])
            for p in ("float32", "bfloat16")}
    best = {p: float("inf") for p in lfts}
    for _ in range(rounds):
        for p, lft in lfts.items():
            best[p] = min(best[p], best_time(lambda lft=lft: lft.transform(X), repeat=1))
    drift = min(float(c.min()) for c in lfts["bfloat16"].precision_drift(X[:128]).values())
    return [name, f"{best['float32']:.2f}", f"{best['bfloat16']:.2f}",
            f"{best['float32'] / best['bfloat16']:.2f}", f"{drift:.5f}"]


def flops_share_of_first_block(model, X, first_block):
    """Time share of the first block measured by hooks on a plain forward."""
    import time

    stamps = {}
    module = model.get_submodule(first_block)
    def stamp(*args):
        stamps.setdefault("t", time.perf_counter())

    h = module.register_forward_hook(stamp)
    with torch.inference_mode():
        start = time.perf_counter()
        model(torch.as_tensor(X))
        end = time.perf_counter()
    h.remove()
    return (stamps["t"] - start) / (end - start)


def main():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--precision-only", action="store_true",
                        help="only the bfloat16 vs float32 table")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(512, 3, 32, 32)).astype(np.float32)
    tokens = torch.as_tensor(rng.integers(0, 1000, size=(512, 64)))
    resnet = make_resnet18()
    encoder = make_transformer_encoder(d_model=256, n_heads=4, n_layers=6)
    if args.precision_only:
        print(f"torch {torch.__version__}, threads=1, 512 rows, batch 128, every block, "
              f"cache off, best of {args.rounds} interleaved rounds")
        print_table(
            [precision_row("ResNet-18 3x32x32", resnet, images, 128, args.rounds),
             precision_row("Transformer 6x256, T=64", encoder, tokens, 128, args.rounds)],
            ["network", "float32 s", "bfloat16 s", "float32 / bf16",
             "min cosine (all blocks)"],
        )
        return
    rows = [
        bench("ResNet-18 3x32x32", resnet, images, 128, "layer1.0"),
        bench("Transformer 6x256, T=64", encoder, tokens, 128, "encoder.layers.0"),
    ]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, 512 rows, batch 128, best of 5 interleaved rounds")
    print_table(
        rows,
        ["network", "raw s", "all blocks s", "all/raw thrpt", "penult/raw thrpt",
         "first block / full time"],
    )
    print_table(
        [precision_row("ResNet-18 3x32x32", resnet, images, 128),
         precision_row("Transformer 6x256, T=64", encoder, tokens, 128)],
        ["network", "float32 s", "bfloat16 s", "float32 / bf16", "min cosine (all blocks)"],
    )
    share_cnn = flops_share_of_first_block(resnet, images[:128], "layer1.0")
    share_tr = flops_share_of_first_block(encoder, tokens[:128], "encoder.layers.0")
    print(f"time share of the forward up to the first block (hook timestamps): "
          f"ResNet {share_cnn:.3f}, transformer {share_tr:.3f}")


if __name__ == "__main__":
    main()
