"""GridSearchCV over layers on joblib backends: a raw ~100 MiB module vs a FrozenModel.

Run: ``.venv/bin/python benchmarks/bench_scaleout.py`` (needs ``dask[array]`` and
``distributed``; one torch thread per process).

One grid (4 layers x 3 folds + refit = 13 fits of a
``LayerFeatureTransformer -> RidgeClassifier`` pipeline, cache off so every
task runs the network; a closed-form head keeps the time on the network and on
shipping it) is timed with ``n_jobs=1``, loky x2, threading x2 and
Dask x2 (a ``LocalCluster`` of 2 single-threaded worker processes), once with
the network passed as a module and once as a :class:`~sklearn_layers.FrozenModel`.
Printed: wall time, its ratio to ``n_jobs=1`` with the same model and to
``n_jobs=1`` with the raw module, the pickled size of the estimator (what each
task ships), and the time to pickle + unpickle it once.

Every backend is warmed up first (workers started, torch imported), so times
are those of the grid itself; each time is the best of ``REPEAT`` runs. A
FrozenModel's one load per worker process is part of its first run. Torch and
BLAS run one thread in every process. Dask's "Sending large graph" warning for
the raw module is silenced: it is exactly what this benchmark measures.
"""

import functools
import os
import pickle
import sys
import tempfile
import time
import warnings
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.linear_model import RidgeClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import FrozenModel, LayerFeatureTransformer  # noqa: E402
from sklearn_layers.utils.toy import make_mlp  # noqa: E402

# 64 -> 2048 -> 4096 -> 4096 -> 512 -> 10: 27.4 M float32 weights, 104.6 MiB
FACTORY = functools.partial(
    make_mlp, n_features=64, hidden=(2048, 4096, 4096, 512), n_outputs=10
)
LAYERS = ["1", "3", "5", "7"]
N_ROWS = 240
CV = 3
REPEAT = 2


def _warm():
    import sklearn_layers  # noqa: F401  (imports torch in the worker)

    return os.getpid()


def grid_search(model, X, y, backend, n_jobs, client=None):
    pipe = Pipeline(
        [
            ("features", LayerFeatureTransformer(model, cache=None)),
            ("head", RidgeClassifier()),
        ]
    )
    grid = GridSearchCV(pipe, {"features__layers": LAYERS}, cv=CV, n_jobs=n_jobs)
    start = time.perf_counter()
    if backend is None:
        grid.fit(X, y)
    else:
        with joblib.parallel_backend(backend):
            grid.fit(X, y)
    return time.perf_counter() - start, grid.cv_results_["mean_test_score"], pipe


def round_trip(obj):
    start = time.perf_counter()
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    pickle.loads(blob)
    return len(blob), time.perf_counter() - start


def main():
    import distributed

    torch.set_num_threads(1)
    threadpool_limits(1)
    warnings.filterwarnings("ignore", message="Sending large graph")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_ROWS, 64)).astype(np.float32)
    y = (X[:, :8].sum(axis=1) > 0).astype(int)

    raw = FACTORY()
    n_bytes = sum(p.numel() * p.element_size() for p in raw.parameters())
    tmp = tempfile.mkdtemp()
    handle = FrozenModel.from_module(
        raw, os.path.join(tmp, "wide_mlp.pt"), factory=FACTORY
    )
    print(
        f"model: wide MLP, {n_bytes / 2**20:.1f} MiB of float32 weights; "
        f"{N_ROWS} rows x 64 features; grid: {len(LAYERS)} layers x {CV} folds + refit"
    )
    print(
        f"torch {torch.__version__}, joblib {joblib.__version__}, "
        f"distributed {distributed.__version__}, {os.cpu_count()} CPUs\n"
    )

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = distributed.Client(cluster)
    try:
        client.run(_warm)
        joblib.Parallel(n_jobs=2, backend="loky")(
            joblib.delayed(_warm)() for _ in range(4)
        )

        configs = [
            ("n_jobs=1", None, 1),
            ("loky x2", "loky", 2),
            ("threading x2", "threading", 2),
            ("dask x2", "dask", 2),
        ]
        rows, baseline, scores = [], {}, {}
        for kind, model in (("module", raw), ("FrozenModel", handle)):
            for label, backend, n_jobs in configs:
                runs = [
                    grid_search(model, X, y, backend, n_jobs) for _ in range(REPEAT)
                ]
                seconds = min(r[0] for r in runs)
                _, score, pipe = runs[0]
                scores[(kind, label)] = score
                if backend is None:
                    baseline[kind] = seconds
                size, ser = round_trip(pipe)
                shipped = "-" if backend in (None, "threading") else f"{size:,}"
                rows.append(
                    [
                        kind,
                        label,
                        f"{seconds:.2f}",
                        f"{seconds / baseline[kind]:.2f}",
                        f"{seconds / baseline['module']:.2f}",
                        shipped,
                        f"{ser:.3f}",
                    ]
                )
        print_table(
            rows,
            [
                "model",
                "backend",
                "time (s)",
                "vs n_jobs=1",
                "vs module n_jobs=1",
                "bytes per task",
                "pickle+unpickle (s)",
            ],
        )
        reference = scores[("module", "n_jobs=1")]
        same = all(np.allclose(s, reference) for s in scores.values())
        print(f"\nevery configuration gives the n_jobs=1 scores: {same}")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
