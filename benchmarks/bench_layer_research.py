"""Does it hold? Layer fusion and label-free layer metrics on three shift scenarios.

Run: ``.venv/bin/python benchmarks/bench_layer_research.py [--seeds 0 1 2]
[--scenarios tweets newsgroups digits] [--cache-dir DIR] [--json PATH] [--quick]``

Scenarios (the demo's, on smaller fixed pools so that every seed reuses the
forward passes, which a ``DiskCache`` under ``--cache-dir``, default a
temporary directory, serves):

- ``tweets``: all-MiniLM-L6-v2, mean pooling, embeddings + 6 blocks; author of
  2016 election tweets. Pools: 2,000 tweets of January-June, 600 of
  August-September. Each seed trains on 1,000 of the first pool and tests on
  400 others (in distribution) and on 400 of the second (shifted).
- ``newsgroups``: the same network (first 128 tokens); the top-level category
  of a post. Pools: 1,000 training posts of comp.graphics, rec.autos,
  sci.crypt, talk.politics.guns; 500 test posts of those groups; 500 of
  comp.sys.mac.hardware, rec.sport.hockey, sci.med, talk.politics.mideast.
  Each seed trains on 800 and tests on 400 + 400, balanced over the groups.
- ``digits``: the MNIST CNN of ``digit-recognizer-py`` on scikit-learn's
  digits (28 x 28), its 5 blocks; each seed splits the 1,797 digits in halves
  (stratified) and tests on the held-out half as it is and rotated, noisy,
  translated, scaled (``shifted`` = the mean over the four).

Per seed: the default probe on every single layer (``layer_sweep``); the
layer ``IntermediateLayerClassifier`` picks by 5-fold CV on the training rows;
the last layer; the layer best on the shifted test itself (an oracle, for
scale); ``LayerFusionClassifier`` over all layers with each fusion; and
``layer_metrics`` of each layer's training features (at most 1,000 rows). For
each metric: the Spearman correlation across layers between the metric and
the probe's accuracy (in distribution and shifted), and the accuracies of the
layer the metric picks in its preferred direction.
"""

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import (  # noqa: E402
    ConcatFusion,
    DiskCache,
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    LayerFusionClassifier,
    StackingFusion,
    WeightedFusion,
    layer_metrics,
    layer_sweep,
)
from sklearn_layers.datasets import (  # noqa: E402
    load_digits_28x28,
    load_election_tweets,
    load_newsgroups,
    shift_digits,
)
from sklearn_layers.metrics import get_layer_metric, get_layer_metric_names  # noqa: E402
from sklearn_layers.models import load_digit_cnn, load_minilm  # noqa: E402

MINILM_LAYERS = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
NEWSGROUPS_TRAIN = ("comp.graphics", "rec.autos", "sci.crypt", "talk.politics.guns")
NEWSGROUPS_SHIFTED = (
    "comp.sys.mac.hardware", "rec.sport.hockey", "sci.med", "talk.politics.mideast",
)
DIGIT_SHIFTS = ("rotation", "noise", "translation", "scale")
# each fusion with its defaults; the seed draws the weighted head's start
FUSIONS = {
    "weighted": lambda seed: WeightedFusion(random_state=seed),
    "concat": lambda seed: ConcatFusion(),
    "stack": lambda seed: StackingFusion(),
}
ID = "in-distribution"


@dataclass
class Scenario:
    """A network, fixed pools of rows, and how one seed draws from them."""

    name: str
    model: object
    layers: object
    extraction: dict
    shifts: tuple
    draw: object  # seed -> (X_train, y_train, {split: (X, y)})
    notes: list = field(default_factory=list)


def _pick(n_rows, n, rng):
    return np.sort(rng.permutation(n_rows)[:n])


def _take(texts, labels, rows):
    return [texts[i] for i in rows], labels[rows]


def tweets(sizes):
    model, tokenizer = load_minilm()
    frame = load_election_tweets().frame
    month = frame["time"].dt.month
    pool_rng = np.random.default_rng(12345)
    early = pool_rng.permutation(np.flatnonzero(month <= 6))[: sizes["pool"]]
    late = pool_rng.permutation(np.flatnonzero(month.isin([8, 9])))[: sizes["shift_pool"]]
    texts, authors = frame["text"].tolist(), frame["author"].to_numpy()

    def draw(seed):
        rng = np.random.default_rng(seed)
        order = rng.permutation(early)
        test, train = order[: sizes["test"]], order[sizes["test"]:][: sizes["train"]]
        shifted = rng.permutation(late)[: sizes["test"]]
        return (*_take(texts, authors, train),
                {ID: _take(texts, authors, test), "shifted": _take(texts, authors, shifted)})

    return Scenario("tweets", model, MINILM_LAYERS,
                    dict(pooling="mean", tokenizer=tokenizer, batch_size=64), ("shifted",), draw)


def _balanced(frame, n, rng):
    groups = frame.groupby("newsgroup").indices
    per_group = n // len(groups)
    return np.sort(np.concatenate(
        [rng.permutation(rows)[:per_group] for _, rows in sorted(groups.items())]))


def newsgroups(sizes):
    model, tokenizer = load_minilm(max_length=128)
    train_frame = load_newsgroups(subset="train", categories=list(NEWSGROUPS_TRAIN)).frame
    test_frame = load_newsgroups(
        subset="test", categories=list(NEWSGROUPS_TRAIN + NEWSGROUPS_SHIFTED)).frame
    pool_rng = np.random.default_rng(12345)
    inside = test_frame["newsgroup"].isin(NEWSGROUPS_TRAIN).to_numpy()
    pools = {
        "train": train_frame.iloc[_balanced(train_frame, sizes["pool"], pool_rng)],
        ID: test_frame[inside].iloc[
            _balanced(test_frame[inside], sizes["shift_pool"], pool_rng)],
        "shifted": test_frame[~inside].iloc[
            _balanced(test_frame[~inside], sizes["shift_pool"], pool_rng)],
    }

    def draw(seed):
        rng = np.random.default_rng(seed)
        data = {}
        for name, pool in pools.items():
            n = sizes["train"] if name == "train" else sizes["test"]
            rows = pool.iloc[_balanced(pool, n, rng)]
            data[name] = (rows["text"].tolist(), rows["top_level"].to_numpy())
        return (*data.pop("train"), data)

    return Scenario("newsgroups", model, MINILM_LAYERS,
                    dict(pooling="mean", tokenizer=tokenizer, batch_size=64), ("shifted",), draw)


def digits(sizes):
    model = load_digit_cnn()
    images, labels = load_digits_28x28(return_X_y=True)
    images, labels = images[: sizes["digits"]], labels[: sizes["digits"]]
    # one fixed noise draw: the shifted images are the same rows for every seed
    shifted = {kind: shift_digits(images, kind, random_state=0) for kind in DIGIT_SHIFTS}

    def draw(seed):
        train, test = train_test_split(np.arange(len(labels)), test_size=0.5,
                                       stratify=labels, random_state=seed)
        tests = {ID: (images[test], labels[test])}
        tests.update({kind: (shifted[kind][test], labels[test]) for kind in DIGIT_SHIFTS})
        return images[train], labels[train], tests

    return Scenario("digits", model, "all", dict(pooling="auto"), DIGIT_SHIFTS, draw)


SIZES = {
    "full": dict(pool=2000, shift_pool=600, train=1000, test=400, digits=None,
                 news_pool=1000, news_test_pool=500, news_train=800),
    "quick": dict(pool=200, shift_pool=80, train=120, test=60, digits=400,
                  news_pool=120, news_test_pool=80, news_train=80),
}


def _scenario(name, quick):
    s = SIZES["quick" if quick else "full"]
    if name == "tweets":
        return tweets(dict(pool=s["pool"], shift_pool=s["shift_pool"], train=s["train"],
                           test=s["test"]))
    if name == "newsgroups":
        return newsgroups(dict(pool=s["news_pool"], shift_pool=s["news_test_pool"],
                               train=s["news_train"], test=s["test"]))
    return digits(dict(digits=s["digits"]))


def _shifted(scores, shifts):
    return float(np.mean([scores[k] for k in shifts]))


def run_seed(scenario, seed, cache):
    """Every single layer, the CV pick, the fusions and the metrics for one seed."""
    X, y, tests = scenario.draw(seed)
    extractor = LayerFeatureTransformer(scenario.model, cache=cache, **scenario.extraction)
    kw = dict(layers=scenario.layers)
    splits = [ID, *scenario.shifts]
    times = {}

    start = time.perf_counter()
    sweep = layer_sweep(extractor, X, y, test_sets=tests, n_bootstrap=0,
                        cost_sample=0, **kw)
    times["single layers"] = time.perf_counter() - start
    layers = list(dict.fromkeys(sweep.sort_values("layer_index")["layer"]))
    per_layer = {layer: {row.split: row.score for row in sweep[sweep.layer == layer]
                         .itertuples()} for layer in layers}
    for scores in per_layer.values():
        scores["shifted"] = _shifted(scores, scenario.shifts)

    start = time.perf_counter()
    ilc = IntermediateLayerClassifier(extractor, cv=5, **kw).fit(X, y)
    times["CV pick"] = time.perf_counter() - start
    oracle = max(layers, key=lambda layer: per_layer[layer]["shifted"])
    methods = {
        "last layer": dict(per_layer[layers[-1]], layer=layers[-1]),
        "best layer by CV": dict(per_layer[ilc.best_layer_], layer=ilc.best_layer_),
        "oracle layer (best shifted)": dict(per_layer[oracle], layer=oracle),
    }
    weights = None
    for fusion in FUSIONS:
        start = time.perf_counter()
        fused = LayerFusionClassifier(extractor, fusion=FUSIONS[fusion](seed), **kw).fit(X, y)
        scores = {split: float(fused.score(*tests[split])) for split in splits}
        scores["shifted"] = _shifted(scores, scenario.shifts)
        methods[f"fusion: {fusion}"] = scores
        times[f"fusion {fusion}"] = time.perf_counter() - start
        if fusion == "weighted":
            weights = dict(zip(fused.layer_names_, map(float, fused.fusion_.layer_weights_)))

    start = time.perf_counter()
    table = layer_metrics(extractor, X, y, max_samples=1000, random_state=seed, **kw)
    times["metrics"] = time.perf_counter() - start
    metrics = {name: dict(zip(table["layer"], map(float, table[name])))
               for name in get_layer_metric_names()}
    return dict(seed=seed, layers=layers, per_layer=per_layer, methods=methods,
                metrics=metrics, weights=weights, times=times)


def _rho(a, b):
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return np.nan
    return float(spearmanr(a, b).statistic)


def metric_rows(results):
    """Per metric: Spearman with ID and shifted accuracy, and the accuracy of its pick."""
    rows = {}
    for name in get_layer_metric_names():
        greater = get_layer_metric(name).greater_is_better
        rho_id, rho_shift, pick_id, pick_shift, picks = [], [], [], [], []
        for r in results:
            layers = r["layers"]
            values = np.array([r["metrics"][name][layer] for layer in layers])
            acc_id = np.array([r["per_layer"][layer][ID] for layer in layers])
            acc_shift = np.array([r["per_layer"][layer]["shifted"] for layer in layers])
            rho_id.append(_rho(values, acc_id))
            rho_shift.append(_rho(values, acc_shift))
            best = int(np.argmax(values) if greater else np.argmin(values))
            pick_id.append(acc_id[best])
            pick_shift.append(acc_shift[best])
            picks.append(layers[best])
        rows[name] = dict(direction="higher" if greater else "lower", rho_id=rho_id,
                          rho_shift=rho_shift, pick_id=pick_id, pick_shift=pick_shift,
                          picks=picks)
    return rows


def _ms(values, digits=3):
    values = np.asarray(values, dtype=float)
    if np.all(np.isnan(values)):
        return "n/a"
    mean = np.nanmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {np.nanstd(values):.{digits}f}"


def _short(layer):
    return layer.replace("encoder.layer.", "L").replace("conv_layers.", "conv.").replace(
        "fc_layers.", "fc.")


def report(name, scenario, results):
    splits = [ID, *scenario.shifts] + (["shifted"] if len(scenario.shifts) > 1 else [])
    print(f"\n### {name}: {len(results)} seeds (mean ± sd over seeds)\n")
    rows = []
    for method in results[0]["methods"]:
        entries = [r["methods"][method] for r in results]
        row = [method] + [_ms([e[s] for e in entries]) for s in splits]
        chosen = [_short(e["layer"]) for e in entries if "layer" in e]
        row.append(", ".join(chosen) if chosen else "all")
        rows.append(row)
    print_table(rows, ["method", *splits, "layer per seed"])

    print(f"\nPer layer ({name}): probe accuracy, weighted-fusion weight, metric values\n")
    metric_names = get_layer_metric_names()
    rows = []
    for layer in results[0]["layers"]:
        row = [_short(layer)]
        row += [_ms([r["per_layer"][layer][s] for r in results]) for s in (ID, "shifted")]
        row.append(_ms([r["weights"].get(layer, np.nan) for r in results], 2))
        row += [_ms([r["metrics"][m][layer] for r in results], 3) for m in metric_names]
        rows.append(row)
    print_table(rows, ["layer", ID, "shifted", "fusion weight", *metric_names])

    print(f"\nMetrics ({name}): Spearman across layers, and the layer each metric picks\n")
    rows = []
    for metric, m in metric_rows(results).items():
        rows.append([metric, m["direction"], _ms(m["rho_id"], 2), _ms(m["rho_shift"], 2),
                     _ms(m["pick_id"]), _ms(m["pick_shift"]),
                     ", ".join(_short(p) for p in m["picks"])])
    for method in ("best layer by CV", "last layer", "oracle layer (best shifted)"):
        entries = [r["methods"][method] for r in results]
        rows.append([f"({method})", "", "", "", _ms([e[ID] for e in entries]),
                     _ms([e["shifted"] for e in entries]),
                     ", ".join(_short(e["layer"]) for e in entries)])
    print_table(rows, ["metric", "better", "rho(ID acc)", "rho(shifted acc)",
                       "pick: ID acc", "pick: shifted acc", "picked layer per seed"])
    times = {k: np.mean([r["times"][k] for r in results]) for k in results[0]["times"]}
    print("\nseconds per seed: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))


def main(args):
    torch.set_num_threads(1)
    tmp = None
    if args.cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_layer_research_")
        cache_dir = tmp.name
    else:
        cache_dir = args.cache_dir
    everything = {}
    try:
        for name in args.scenarios:
            start = time.perf_counter()
            scenario = _scenario(name, args.quick)
            cache = DiskCache(Path(cache_dir) / name, memory_bytes=1 << 30)
            results = []
            for seed in args.seeds:
                seed_start = time.perf_counter()
                results.append(run_seed(scenario, seed, cache))
                print(f"[{name}] seed {seed}: {time.perf_counter() - seed_start:.0f} s",
                      flush=True)
            report(name, scenario, results)
            print(f"[{name}] total {time.perf_counter() - start:.0f} s", flush=True)
            everything[name] = results
    finally:
        if tmp is not None:
            tmp.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1, default=float))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scenarios", nargs="+", default=["tweets", "newsgroups", "digits"],
                        choices=["tweets", "newsgroups", "digits"])
    parser.add_argument("--cache-dir", default=None,
                        help="keep the activation cache here (default: a temporary directory)")
    parser.add_argument("--json", default=None, help="also write every per-seed result here")
    parser.add_argument("--quick", action="store_true", help="tiny pools, for a smoke test")
    main(parser.parse_args())
