"""Peak memory of extraction: streaming in batches, and the cache's byte bound.

Run: ``.venv/bin/python benchmarks/bench_memory.py``

Each measurement runs in a fresh child process (peak RSS is per process):

1. every block of a small CNN, cache off, over N and 10 N rows: the peak should
   grow by about the output matrix (plus the input, which the caller holds),
   not by the activations of all rows;
2. the same over 10 N rows with a ``MemoryCache(max_bytes=B)`` smaller than the
   data's features: the cache holds at most B, and the peak stays near the
   cache-off peak plus B.
"""

import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.utils.toy import make_resnet18

rows, max_bytes = int(sys.argv[1]), int(sys.argv[2])
net = make_resnet18(width=16)
X = np.random.default_rng(0).standard_normal((rows, 3, 32, 32), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cache = MemoryCache(max_bytes) if max_bytes else None
lft = LayerFeatureTransformer(net, layers="all", cache=cache, batch_size=128).fit(X[:1])
out = lft.transform(X)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "input_mib": X.nbytes / 2**20,
                  "output_mib": out.nbytes / 2**20, "base_mib": base / 1024,
                  "peak_mib": peak / 1024,
                  "cache_mib": (cache.nbytes / 2**20) if cache else 0.0}))
"""


def measure(rows, max_bytes=0):
    result = subprocess.run([sys.executable, "-c", CHILD, str(rows), str(max_bytes)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    n = 2000
    small = measure(n)
    large = measure(10 * n)
    bound = 8 << 20
    cached = measure(10 * n, bound)
    print("ResNet-18 (width 16), all 10 blocks pooled, batch 128, one torch thread")
    print(f"{'run':<34} {'rows':>6} {'input MiB':>10} {'output MiB':>11} "
          f"{'cache MiB':>10} {'peak - before MiB':>18}")
    for name, r in [("cache=None", small), ("cache=None", large),
                    (f"MemoryCache(max_bytes={bound >> 20} MiB)", cached)]:
        print(f"{name:<34} {r['rows']:>6} {r['input_mib']:>10.1f} {r['output_mib']:>11.1f} "
              f"{r['cache_mib']:>10.1f} {r['peak_mib'] - r['base_mib']:>18.1f}")
    growth = (large["peak_mib"] - large["base_mib"]) - (small["peak_mib"] - small["base_mib"])
    out_growth = large["output_mib"] - small["output_mib"]
    print(f"10x rows: extraction peak grew by {growth:.1f} MiB; the output matrix by "
          f"{out_growth:.1f} MiB (ratio {growth / out_growth:.2f})")
    extra = (cached["peak_mib"] - cached["base_mib"]) - (large["peak_mib"] - large["base_mib"])
    print(f"with the {bound >> 20} MiB cache: {cached['cache_mib']:.1f} MiB held, peak "
          f"{extra:+.1f} MiB over cache-off")


if __name__ == "__main__":
    main()
