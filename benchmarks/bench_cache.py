"""The activation cache against its anchors, in one run.

Run: ``.venv/bin/python benchmarks/bench_cache.py [--rows 5000] [--width 256]``

1. ``DiskCache.store`` and a fresh ``DiskCache.lookup`` of ``rows`` x 4 layers x
   ``width`` floats, against a bare SQLite table on the same data (stdlib
   ``sqlite3``, WAL, one ``executemany`` per batch of 500 rows, ``SELECT ... IN``
   per 400 rows): goal within 1.5x;
2. a one-row cache hit (``transform`` of one cached row, model identity
   included) against a one-row forward (``net(x)`` under inference mode) on a
   25-million-parameter MLP: goal <= 0.25;
3. rows a second process computes when it fits and transforms the same data on
   the same ``DiskCache`` directory, started with another ``PYTHONHASHSEED``
   (a CNN and a transformer encoder): goal 1 row per fit (the fit computes one
   row itself) and 0 per transform.
"""

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from _common import best_time, print_table

from sklearn_layers import DiskCache, LayerFeatureTransformer, MemoryCache
from sklearn_layers._extraction._cache import _SCHEMA

BATCH, CHUNK, LAYERS = 500, 400, ("layer1|mean", "layer2|mean", "layer3|mean", "layer4|mean")


def bare_store(path, model, matrices, digests):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    for statement in _SCHEMA.split(";")[:-1]:
        db.execute(statement)
    for lo in range(0, len(digests), BATCH):
        rows = [(model, layer, d, "<f4", m.shape[1], m[i].tobytes())
                for layer, m in matrices.items() for i, d in enumerate(digests[lo:lo + BATCH], lo)]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT OR IGNORE INTO rows VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    db.close()


def bare_lookup(path, model, digests):
    db = sqlite3.connect(path, isolation_level=None)
    found = {}
    for lo in range(0, len(digests), CHUNK):
        rows = digests[lo:lo + CHUNK]
        for layer, row, value in db.execute(
            f"SELECT layer, row, value FROM rows WHERE model = ? AND layer IN "
            f"({','.join('?' * len(LAYERS))}) AND row IN ({','.join('?' * len(rows))})",
            [model, *LAYERS, *rows]):
            found[layer, row] = np.frombuffer(value, dtype=np.float32)
    db.close()
    return found


def store_and_lookup(n_rows, width):
    rng = np.random.default_rng(0)
    matrices = {layer: rng.standard_normal((n_rows, width), dtype=np.float32) for layer in LAYERS}
    digests = [i.to_bytes(16, "little") for i in range(n_rows)]
    model = "f" * 64 + "-torch.float32-cpu-0123456789abcdef"
    times = {}
    for name in ("bare", "DiskCache"):
        stores, lookups = [], []
        for _ in range(3):
            with tempfile.TemporaryDirectory() as directory:
                if name == "bare":
                    file = os.path.join(directory, "bare.sqlite")
                    start = time.perf_counter()
                    bare_store(file, model, matrices, digests)
                    stores.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    assert len(bare_lookup(file, model, digests)) == n_rows * len(LAYERS)
                    lookups.append(time.perf_counter() - start)
                else:
                    cache = DiskCache(directory, memory_bytes=0)
                    start = time.perf_counter()
                    for lo in range(0, n_rows, BATCH):
                        cache.store(model, {k: m[lo:lo + BATCH] for k, m in matrices.items()},
                                    digests[lo:lo + BATCH])
                    stores.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    found = DiskCache(directory, memory_bytes=0).lookup(model, LAYERS, digests)
                    lookups.append(time.perf_counter() - start)
                    assert all(r is not None for rows in found.values() for r in rows)
        times[name] = (min(stores), min(lookups))
    return times


def hit_vs_forward():
    torch.manual_seed(0)
    dims = [2500] * 5
    net = torch.nn.Sequential(*[torch.nn.Linear(a, b) for a, b in zip(dims, dims[1:])]).eval()
    n_params = sum(p.numel() for p in net.parameters())
    x = np.random.default_rng(0).standard_normal((1, dims[0]), dtype=np.float32)
    lft = LayerFeatureTransformer(net, layers="3", cache=MemoryCache()).fit(x)
    lft.transform(x)  # stored: every later call is a hit
    uncached = LayerFeatureTransformer(net, layers="3", cache=None).fit(x)

    def forward():
        with torch.inference_mode():
            net(torch.as_tensor(x))

    return n_params, best_time(lambda: lft.transform(x), 20), best_time(forward, 20), \
        best_time(lambda: uncached.transform(x), 20)


SECOND = r"""
import sys, numpy as np, torch
from torch import nn
from sklearn_layers import DiskCache, LayerFeatureTransformer
torch.set_num_threads(1)
torch.manual_seed(0)
cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                    nn.Conv2d(4, 4, 3, padding="same"), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                    nn.Linear(16, 3))
encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)
X = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
tokens = np.random.default_rng(1).normal(size=(64, 5, 8)).astype(np.float32)
for net, data, layer in ((cnn, X, "3"), (encoder, tokens, "layers.1")):
    cache = DiskCache(sys.argv[1])
    lft = LayerFeatureTransformer(net, layers=layer, cache=cache).fit(data)
    fitted = cache.n_rows_computed
    lft.transform(data)
    print(type(net).__name__, fitted, cache.n_rows_computed - fitted)
"""


def second_process():
    with tempfile.TemporaryDirectory() as directory:
        runs = []
        for seed in (1, 2):
            env = {**os.environ, "PYTHONHASHSEED": str(seed)}
            out = subprocess.run([sys.executable, "-c", SECOND, directory], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            runs.append(out)
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)

    times = store_and_lookup(args.rows, args.width)
    (bare_s, bare_l), (disk_s, disk_l) = times["bare"], times["DiskCache"]
    print(f"1. {args.rows} rows x {len(LAYERS)} layers x {args.width} float32 (best of 3)")
    print_table([["store", f"{bare_s:.3f}", f"{disk_s:.3f}", f"{disk_s / bare_s:.2f}"],
                 ["fresh lookup", f"{bare_l:.3f}", f"{disk_l:.3f}", f"{disk_l / bare_l:.2f}"]],
                ["", "bare SQLite s", "DiskCache s", "ratio (goal <= 1.5)"])

    n_params, hit, forward, uncached = hit_vs_forward()
    print(f"\n2. one row through a {n_params / 1e6:.0f}M-parameter MLP (best of 20)")
    print_table([["one-row hit (transform)", f"{hit * 1e3:.2f}", f"{hit / forward:.2f}"],
                 ["one-row forward (net(x))", f"{forward * 1e3:.2f}", "1.00"],
                 ["one-row transform, cache=None", f"{uncached * 1e3:.2f}", f"{uncached / forward:.2f}"]],
                ["", "ms", "/ forward (goal hit <= 0.25)"])

    first, second = second_process()
    print("\n3. rows through the network, same DiskCache directory, PYTHONHASHSEED 1 then 2")
    print_table([[first[i], first[i + 1], first[i + 2], second[i + 1], second[i + 2]]
                 for i in (0, 3)],
                ["model", "1st fit", "1st transform", "2nd fit (goal 1)", "2nd transform (goal 0)"])


if __name__ == "__main__":
    main()
