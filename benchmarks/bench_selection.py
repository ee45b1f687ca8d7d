"""Deployment runs only what it needs: predict time of an ILC by its chosen layer.

Run: ``.venv/bin/python benchmarks/bench_selection.py [--train 600] [--predict 400]``

all-MiniLM-L6-v2 on the 2016 election tweets (author). Two fitted
``IntermediateLayerClassifier`` s -- one whose candidates are the early layers
(it chooses ``encoder.layer.2`` or earlier), one forced to the last layer
``encoder.layer.5`` -- both searched with the default activation cache. Their
``predict`` on tweets never seen (so every row goes through the network) is
timed, best of ``--rounds`` interleaved rounds, one torch thread. After ``fit``
the extractor exits right after the chosen layer and prefetches nothing, so
the early ILC should cost about that layer's share of the forward pass (3/6 of
the encoder plus the embeddings, less the pooler).

Deployment: a ``GridSearchCV`` over a pipeline (MiniLM layers 1, 3, 5, mean
pooling, the default probe) is fitted with the default cache; its winner is
pickled and loaded twice, once as fitted and once through
``prepare_for_deployment``. Each round predicts ``--deploy-rows`` tweets that
neither has seen (new rows every round, the same rows for both), interleaved.
As fitted, every block of each new row runs and is stored in the process-wide
cache; deployed, the forward exits after the winner's layer and stores nothing.
"""

import argparse
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import (  # noqa: E402
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    default_probe,
    prepare_for_deployment,
)
from sklearn_layers._extraction._cache import make_cache  # noqa: E402
from sklearn_layers.datasets import load_election_tweets  # noqa: E402
from sklearn_layers.models import load_minilm  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--predict", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deploy-rows", type=int, default=150)
    parser.add_argument("--skip-ilc", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    model, tokenizer = load_minilm()
    bunch = load_election_tweets()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(bunch.data))
    texts = [bunch.data[i] for i in order]
    labels = np.asarray(bunch.target)[order]
    train, new = texts[: args.train], texts[args.train : args.train + args.predict]
    y = labels[: args.train]

    deployment(model, tokenizer, train, y, texts[args.train :], args)
    if args.skip_ilc:
        return
    fitted = {}
    for name, layers in (("early (layers 0-2)", [f"encoder.layer.{i}" for i in range(3)]),
                         ("last layer", ["encoder.layer.5"])):
        extractor = LayerFeatureTransformer(model, tokenizer=tokenizer, batch_size=64)
        ilc = IntermediateLayerClassifier(extractor, layers=layers, cv=3)
        fitted[name] = ilc.fit(train, y)
    best = {name: np.inf for name in fitted}
    for _ in range(args.rounds):
        for name, ilc in fitted.items():
            batch = list(new)  # the same rows each round, never cached by predict's cache
            ilc.extractor_.set_params(cache=None)
            start = time.perf_counter()
            ilc.predict(batch)
            best[name] = min(best[name], time.perf_counter() - start)
    last = best["last layer"]
    rows = [[name, ilc.best_layer_, f"{ilc.layer_costs_[ilc.best_layer_]:.3f}",
             f"{best[name]:.2f}", f"{best[name] / last:.2f}"]
            for name, ilc in fitted.items()]
    print(f"MiniLM, tweets: fit on {len(train)}, predict {len(new)} new rows, one torch "
          f"thread, best of {args.rounds} rounds")
    print_table(rows, ["ILC", "chosen layer", "forward share (FLOPs)", "predict s",
                       "time / last layer"])


def deployment(model, tokenizer, train, y, unseen, args):
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    pipe = Pipeline([("features", LayerFeatureTransformer(model, pooling="mean",
                                                          tokenizer=tokenizer, batch_size=64)),
                     ("head", default_probe())])
    grid = GridSearchCV(pipe, {"features__layers": ["encoder.layer.1", "encoder.layer.3",
                                                    "encoder.layer.5"]}, cv=3)
    grid.fit(train, y)
    blob = pickle.dumps(grid.best_estimator_)
    winners = {"as fitted": pickle.loads(blob),
               "prepare_for_deployment": prepare_for_deployment(pickle.loads(blob))}
    n = args.deploy_rows
    best = {name: np.inf for name in winners}
    default_cache = make_cache("memory")
    entries = {}
    for r in range(args.rounds):
        rows = list(unseen[r * n : (r + 1) * n])
        for name, winner in winners.items():
            before = len(default_cache)
            start = time.perf_counter()
            winner.predict(rows)
            best[name] = min(best[name], time.perf_counter() - start)
            entries[name] = len(default_cache) - before
    fitted = best["as fitted"]
    layer = grid.best_params_["features__layers"]
    print(f"MiniLM, tweets: GridSearchCV winner ({layer}) pickled and loaded, predict {n} "
          f"new rows, one torch thread, best of {args.rounds} rounds")
    print_table([[name, f"{best[name]:.2f}", f"{fitted / best[name]:.2f}", entries[name]]
                 for name in winners],
                ["winner", "predict s", "speed-up", "default-cache entries added"])
    print()


if __name__ == "__main__":
    main()
