"""Peak memory of extraction: streaming in batches, and the cache's byte bound.

Run: ``.venv/bin/python benchmarks/bench_memory.py``

Each measurement runs in a fresh child process (peak RSS is per process):

1. every block of a small CNN, cache off, over N and 10 N rows: the peak should
   grow by about the output matrix (plus the input, which the caller holds),
   not by the activations of all rows;
2. the same over 10 N rows with a ``MemoryCache(max_bytes=B)`` smaller than the
   data's features: the cache holds at most B, and the peak stays near the
   cache-off peak plus B;
3. where the rest of the peak comes from: ``tracemalloc`` (numpy and Python
   allocations, sampled before every batch by a forward pre-hook) over N and
   10 N rows, and the cache-off peaks again with glibc's adaptive mmap
   threshold fixed (``MALLOC_MMAP_THRESHOLD_=65536``, ``MALLOC_TRIM_THRESHOLD_=0``:
   every block over 64 KiB is returned to the system when freed).

Finding (issue 24.5): the traced allocations grow by the output matrix alone
(ratio 1.00). The rest of the RSS peak is the per-batch activations that torch
allocates through glibc: once a freed block raises glibc's dynamic mmap
threshold, later activation blocks come from the heap and freed ones stay
resident, so the peak carries tens of MiB of freed batches whose amount varies
from run to run (measured ratios 0.9-2.3 over identical runs). With the
threshold fixed the ratio is 1.0. The package cannot set it (it is
process-wide, and the user's); a deployment that needs a tight bound sets the
two environment variables.
"""

import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys
import numpy as np, torch
torch.set_num_threads(1)
from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.utils.toy import make_resnet18

rows, max_bytes, traced = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
net = make_resnet18(width=16)
X = np.random.default_rng(0).standard_normal((rows, 3, 32, 32), dtype=np.float32)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cache = MemoryCache(max_bytes) if max_bytes else None
lft = LayerFeatureTransformer(net, layers="all", cache=cache, batch_size=128).fit(X[:1])
per_batch = []
if traced:
    import tracemalloc
    net.register_forward_pre_hook(
        lambda m, a: per_batch.append(tracemalloc.get_traced_memory()[0] / 2**20))
    tracemalloc.start()
out = lft.transform(X)
traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "input_mib": X.nbytes / 2**20,
                  "output_mib": out.nbytes / 2**20, "base_mib": base / 1024,
                  "peak_mib": peak / 1024, "traced_peak_mib": traced_peak,
                  "traced_last_batch_mib": per_batch[-1] if per_batch else 0.0,
                  "cache_mib": (cache.nbytes / 2**20) if cache else 0.0}))
"""

FIXED_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def measure(rows, max_bytes=0, traced=False, env=None):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(rows), str(max_bytes), str(int(traced))],
        capture_output=True, text=True, check=True, env={**os.environ, **(env or {})},
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def peak_growth(small, large):
    return (large["peak_mib"] - large["base_mib"]) - (small["peak_mib"] - small["base_mib"])


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
    traced = [measure(n, traced=True), measure(10 * n, traced=True)]
    traced_growth = traced[1]["traced_peak_mib"] - traced[0]["traced_peak_mib"]
    print(f"tracemalloc (numpy + Python, sampled before each batch): peak {traced[0]['traced_peak_mib']:.1f} "
          f"-> {traced[1]['traced_peak_mib']:.1f} MiB, last batch {traced[0]['traced_last_batch_mib']:.1f} "
          f"-> {traced[1]['traced_last_batch_mib']:.1f} MiB; growth {traced_growth:.1f} MiB "
          f"(ratio to the output {traced_growth / out_growth:.2f})")
    fixed = [measure(n, env=FIXED_THRESHOLD), measure(10 * n, env=FIXED_THRESHOLD)]
    print(f"glibc mmap threshold fixed at 64 KiB: peak grew by {peak_growth(*fixed):.1f} MiB "
          f"(ratio {peak_growth(*fixed) / out_growth:.2f})")


if __name__ == "__main__":
    main()
