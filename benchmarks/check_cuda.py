"""Device check: the network-side code and GrowNet on a CUDA GPU (not part of CI).

Run on a machine with a GPU: ``python benchmarks/check_cuda.py``. Exits non-zero on
the first failed check; prints one line per check.
"""

import pickle
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

from sklearn_layers import (
    GrowNetClassifier,
    LayerFeatureTransformer,
    MemoryCache,
    layer_sweep,
)
from sklearn_layers.utils.toy import make_resnet18, make_transformer_encoder


def check(name, condition, detail=""):
    print(f"{'ok  ' if condition else 'FAIL'} {name} {detail}", flush=True)
    if not condition:
        sys.exit(1)


def main():
    check("cuda available", torch.cuda.is_available(), torch.__version__)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 3, 32, 32)).astype(np.float32)

    cpu_net = make_resnet18(width=32)
    gpu_net = make_resnet18(width=32).cuda()
    flags = [m.training for m in gpu_net.modules()]
    cpu = LayerFeatureTransformer(cpu_net, layers="all", cache=None).fit_transform(X)
    lft = LayerFeatureTransformer(gpu_net, layers="all", device="cuda", cache=MemoryCache())
    gpu = lft.fit_transform(X)
    err = float(np.max(np.abs(cpu - gpu)) / (np.max(np.abs(cpu)) + 1e-12))
    check("resnet features cuda == cpu", err < 1e-4, f"max rel err {err:.2e}")
    check("model stays on cuda", all(p.is_cuda for p in gpu_net.parameters()))
    check("training flags unchanged", flags == [m.training for m in gpu_net.modules()])
    check("no hooks left", all(not m._forward_hooks for m in gpu_net.modules()))

    calls = []
    h = gpu_net.stem[0].register_forward_pre_hook(lambda m, a: calls.append(a[0].shape[0]))
    again = LayerFeatureTransformer(gpu_net, layers="layer2.1", device="cuda",
                                    cache=lft.cache).fit_transform(X)
    h.remove()
    check("cache hit on cuda (no forward)", sum(calls) == 0, f"rows={sum(calls)}")
    offset = 0
    for name in lft.layer_names_:
        if name == "layer2.1":
            break
        offset += lft.n_features_per_layer_[name]
    width = lft.n_features_per_layer_["layer2.1"]
    check("cached columns equal", np.array_equal(again, gpu[:, offset:offset + width]))

    with torch.no_grad():
        gpu_net.fc.weight.mul_(2.0)
    changed = LayerFeatureTransformer(gpu_net, layers="fc", device="cuda",
                                      cache=lft.cache).fit_transform(X)
    before = gpu[:, -10:]
    check("in-place change on cuda is not served stale", not np.allclose(changed, before))

    try:
        LayerFeatureTransformer(gpu_net, layers="fc", device="cpu").fit(X)
        check("device mismatch is an error", False)
    except ValueError as exc:
        check("device mismatch is an error", "cuda" in str(exc))

    ids = torch.as_tensor(rng.integers(0, 1000, size=(256, 32)))
    enc_cpu = make_transformer_encoder()
    enc_gpu = make_transformer_encoder().cuda()
    a = LayerFeatureTransformer(enc_cpu, layers="all", cache=None).fit_transform(ids)
    b = LayerFeatureTransformer(enc_gpu, layers="all", device="cuda", cache=None).fit_transform(ids)
    err = float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-12))
    check("transformer encoder features cuda == cpu", err < 1e-3, f"max rel err {err:.2e}")

    big = rng.normal(size=(4096, 3, 32, 32)).astype(np.float32)
    net = make_resnet18().cuda()
    lft = LayerFeatureTransformer(net, layers="all", device="cuda", cache=None,
                                  batch_size=512).fit(big[:2])
    torch.cuda.synchronize()
    start = time.perf_counter()
    lft.transform(big)
    extract = time.perf_counter() - start
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(big), 512):
            net(torch.as_tensor(big[s:s + 512]).cuda())
    torch.cuda.synchronize()
    raw = time.perf_counter() - start
    print(f"info ResNet-18 4096 rows on cuda: raw {raw:.3f}s, extract all blocks "
          f"{extract:.3f}s, throughput ratio {raw / extract:.2f}")

    table = layer_sweep(LayerFeatureTransformer(gpu_net, device="cuda"), X[:300],
                        np.arange(300) % 2, layers=[0, -2],
                        test_sets={"rest": (X[300:], np.arange(300, 512) % 2)})
    check("layer_sweep with a cuda model", len(table) == 2)

    Xb, yb = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(Xb, yb, random_state=0, stratify=yb)
    cpu_gn = GrowNetClassifier(random_state=0).fit(Xtr, ytr)
    gpu_gn = GrowNetClassifier(random_state=0, device="cuda").fit(Xtr, ytr)
    acc_cpu, acc_gpu = cpu_gn.score(Xte, yte), gpu_gn.score(Xte, yte)
    check("GrowNet on cuda learns", acc_gpu > 0.9, f"cuda {acc_gpu:.3f} cpu {acc_cpu:.3f}")
    restored = pickle.loads(pickle.dumps(gpu_gn))
    check("GrowNet cuda pickle round-trip", np.array_equal(restored.predict(Xte),
                                                           gpu_gn.predict(Xte)))
    print("all device checks passed")


if __name__ == "__main__":
    main()
