"""The heads' array helpers against scipy's and scikit-learn's equivalents.

    python benchmarks/bench_head_helpers.py

``sklearn_layers.heads._rowwise`` keeps its own softmax and row
normalisation only where the library function is slower or computes
something else; the log-softmax and the row chunking are scipy's and
scikit-learn's, which were as fast as the hand-written code they replaced
(kept here as ``_hand_log_softmax`` and ``_hand_row_chunks`` to show it).
This prints the best of 20 runs of each pair on arrays of the shapes the
heads use (one BLAS thread).
"""

import time

import numpy as np
import scipy.special
from sklearn.preprocessing import normalize
from sklearn.utils import gen_batches
from threadpoolctl import threadpool_limits

from sklearn_layers.heads._rowwise import l2_normalize, softmax

CHUNK_VALUES = 1 << 20  # the prototype head's chunks: 8 MiB of float64


def _hand_log_softmax(scores, temperature):
    z = scores / temperature
    z -= z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def _hand_row_chunks(n_rows, n_cols, values=CHUNK_VALUES):
    step = max(1, values // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def best(func, repeat=20):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def main():
    rng = np.random.default_rng(0)
    rows = []
    for n, k in [(5000, 10), (20000, 100)]:
        scores = rng.normal(size=(n, k)) * 5
        t = 0.5
        rows.append((f"softmax {n}x{k}", best(lambda: softmax(scores, t)),
                     best(lambda: scipy.special.softmax(scores / t, axis=1))))
        rows.append((f"log_softmax {n}x{k}", best(lambda: _hand_log_softmax(scores, t)),
                     best(lambda: scipy.special.log_softmax(scores / t, axis=1))))
    for n, d, dtype in [(5000, 384, np.float32), (20000, 512, np.float32),
                        (5000, 384, np.float64)]:
        X = rng.normal(size=(n, d)).astype(dtype)
        name = f"l2 rows {n}x{d} {np.dtype(dtype)}"
        rows.append((name, best(lambda: l2_normalize(X)),
                     best(lambda: normalize(X))))
    n, d = 1_000_000, 64
    rows.append((f"row chunks {n}x{d}", best(lambda: list(_hand_row_chunks(n, d))),
                 best(lambda: list(gen_batches(n, max(1, CHUNK_VALUES // d))))))
    print(f"{'operation':<32} {'own ms':>8} {'library ms':>11} {'own/library':>12}")
    for name, own, library in rows:
        print(f"{name:<32} {own:8.3f} {library:11.3f} {own / library:12.2f}")
    big = np.full((2, 2), 2e38, dtype=np.float32)  # row norm 2.8e38 < float32 max
    print("\nfloat32 rows [2e38, 2e38] normalised, own:", l2_normalize(big)[0],
          "| sklearn normalize:",
          normalize(big)[0])


if __name__ == "__main__":
    with threadpool_limits(limits=1):
        main()
