"""Seeds (issue 26): selectivity, learning curves per layer, zero-shot ILC vs few-shot retraining.

Run: ``.venv/bin/python benchmarks/bench_seeds.py [--parts a b c] [--seeds 0 1 2 3 4]
[--scenarios tweets newsgroups digits] [--cache-dir DIR] [--quick]``

Each scenario's layers are extracted ONCE into arrays (``LayerFeatureTransformer``
over every candidate layer, one forward pass per distinct row, a ``DiskCache``
under ``--cache-dir`` so that a rerun reads them back); every head fit below
works on those arrays, through the package's scoring core
(``_selection._scoring.score_layers``, the code ``layer_sweep`` and the ILC
run) and its control-task and learning-curve modules.

Scenarios (pools fixed by seed 12345; each seed draws from them):

- ``tweets``: all-MiniLM-L6-v2, mean pooling, embeddings + 6 blocks; author of
  2016 election tweets. Source: 1,000 of 1,300 January-June tweets (the other
  300 are the in-distribution test); shifted: 700 August-September tweets,
  per seed 400 candidates for the shifted validation rows and 300 test rows.
- ``newsgroups``: the same network (first 128 tokens); top-level category.
  Source: 510 of 600 training posts of comp.graphics, rec.autos, sci.crypt,
  talk.politics.guns; in-distribution test: 300 test posts of those groups;
  shifted: 700 test posts of comp.sys.mac.hardware, rec.sport.hockey,
  sci.med, talk.politics.mideast (400 validation candidates, 300 test).
- ``digits``: the MNIST CNN of ``digit-recognizer-py`` on scikit-learn's
  digits (28 x 28), its 5 blocks; per seed a stratified half trains, the
  other half tests (in distribution); each of rotation, noise, translation,
  scale of the held-out half is a shifted scenario (``digits-rotation``...):
  400 validation candidates, the other 499 rows test.

Parts:

(a) selectivity (issue 26.2): the default probe, ``PrototypeClassifier`` and
    a pure kNN (``KNNInterpolatedClassifier(knn_weight=1)``) on every layer,
    on the task and on a control task (labels drawn per input identity with
    the task's class frequencies); the in-distribution test accuracy, the
    held-out control accuracy, the selectivity, and the control accuracy on
    the training rows themselves (what the head can memorise). Which layer
    each criterion picks, per seed.
(b) learning curves (issue 26.3): ``GaussianNB``, ``LinearDiscriminantAnalysis``,
    the default probe and ``PrototypeClassifier`` per layer at several
    training sizes (nested stratified subsets of the source rows), in-
    distribution test accuracy, mean and 95% t-interval over seeds, and the
    size from which the probe stays ahead of each generative head.
(c) zero-shot ILC vs few-shot retraining (issue 26.4): per scenario and seed,
    the last layer; the layer the ILC picks by 5-fold CV on the source rows;
    the layer it picks on n shifted validation rows (n = 50, 100, 400, never
    test rows; the probe of every layer is trained on the source rows only);
    the last layer's probe retrained on the source rows plus those n rows;
    the oracle layer (best on the shifted test itself). Shifted test accuracy,
    mean and 95% t-interval over seeds, and the paired difference ILC(n) -
    retrained(n).
"""

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.stats import t as student_t
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import check_scoring
from sklearn.model_selection import StratifiedKFold, train_test_split
from sklearn.naive_bayes import GaussianNB

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import (  # noqa: E402
    DiskCache,
    KNNInterpolatedClassifier,
    LayerFeatureTransformer,
    PrototypeClassifier,
)
from sklearn_layers._selection._choice import choose_layer  # noqa: E402
from sklearn_layers._selection._control import (  # noqa: E402
    class_frequencies,
    control_labels,
    input_identities,
)
from sklearn_layers._selection._curves import score_curves  # noqa: E402
from sklearn_layers._selection._scoring import Splits, score_layers  # noqa: E402
from sklearn_layers.datasets import (  # noqa: E402
    load_digits_28x28,
    load_election_tweets,
    load_newsgroups,
    shift_digits,
)
from sklearn_layers.heads import default_probe  # noqa: E402
from sklearn_layers.models import load_digit_cnn, load_minilm  # noqa: E402

MINILM_LAYERS = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
NEWSGROUPS_TRAIN = ("comp.graphics", "rec.autos", "sci.crypt", "talk.politics.guns")
NEWSGROUPS_SHIFTED = (
    "comp.sys.mac.hardware", "rec.sport.hockey", "sci.med", "talk.politics.mideast",
)
DIGIT_SHIFTS = ("rotation", "noise", "translation", "scale")
VAL_SIZES = (50, 100, 400)


def _short(layer):
    return (layer.replace("encoder.layer.", "L").replace("conv_layers.", "conv.")
            .replace("fc_layers.", "fc.").replace("embeddings", "emb"))


def _ci(values):
    """Mean and 95% t-interval half-width over seeds."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = student_t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def _fmt(values, digits=3):
    mean, half = _ci(values)
    return f"{mean:.{digits}f}" if np.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


class Extracted:
    """One scenario's layers as arrays: ``F[pool]``, ``y[pool]``, ``inputs[pool]``."""

    def __init__(self, name, layers, slices, F, y, inputs, seconds):
        self.name, self.layers, self.slices = name, layers, slices
        self.F, self.y, self.inputs, self.seconds = F, y, inputs, seconds


def _extract(name, model, layers, extraction, pools, cache_dir):
    """Every pool through the network once, all layers side by side."""
    start = time.perf_counter()
    lft = LayerFeatureTransformer(model, layers=layers, cache=DiskCache(Path(cache_dir) / name),
                                  n_threads=1, **extraction).set_output(transform="default")
    names = list(pools)
    first = pools[names[0]][0]
    lft.fit(first[:2] if isinstance(first, list) else first[:2])
    F, y, inputs = {}, {}, {}
    for pool in names:
        X, labels = pools[pool]
        F[pool] = lft.transform(X)
        y[pool], inputs[pool] = np.asarray(labels), X
    slices = lft.feature_slices_
    seconds = time.perf_counter() - start
    print(f"[{name}] extracted {sum(len(v) for v in y.values())} rows x {len(slices)} "
          f"layers in {seconds:.0f} s", flush=True)
    return Extracted(name, list(slices), slices, F, y, inputs, seconds)


def _balanced(frame, n, rng):
    groups = frame.groupby("newsgroup").indices
    per_group = n // len(groups)
    return np.sort(np.concatenate(
        [rng.permutation(rows)[:per_group] for _, rows in sorted(groups.items())]))


def load_tweets(cache_dir, quick):
    model, tokenizer = load_minilm()
    frame = load_election_tweets().frame
    month = frame["time"].dt.month
    rng = np.random.default_rng(12345)
    n_early, n_late = (260, 200) if quick else (1300, 700)
    early = rng.permutation(np.flatnonzero(month <= 6))[:n_early]
    late = rng.permutation(np.flatnonzero(month.isin([8, 9])))[:n_late]
    texts, authors = frame["text"].tolist(), frame["author"].to_numpy()
    pools = {"early": ([texts[i] for i in early], authors[early]),
             "shifted": ([texts[i] for i in late], authors[late])}
    data = _extract("tweets", model, MINILM_LAYERS,
                    dict(pooling="mean", tokenizer=tokenizer, batch_size=64), pools, cache_dir)
    n_test = 60 if quick else 300

    def draw(seed):
        r = np.random.default_rng(seed)
        order = r.permutation(len(data.y["early"]))
        shifted = r.permutation(len(data.y["shifted"]))
        n_val = min(400, len(shifted) // 2)
        return dict(train=("early", order[n_test:]), id=("early", order[:n_test]),
                    val=("shifted", shifted[:n_val]), shift=("shifted", shifted[n_val:][:n_test]))

    return [("tweets", data, draw)]


def load_news(cache_dir, quick):
    model, tokenizer = load_minilm(max_length=128)
    train_frame = load_newsgroups(subset="train", categories=list(NEWSGROUPS_TRAIN)).frame
    test_frame = load_newsgroups(
        subset="test", categories=list(NEWSGROUPS_TRAIN + NEWSGROUPS_SHIFTED)).frame
    rng = np.random.default_rng(12345)
    inside = test_frame["newsgroup"].isin(NEWSGROUPS_TRAIN).to_numpy()
    n_src, n_id, n_shift = (120, 60, 200) if quick else (600, 300, 700)
    frames = {
        "source": train_frame.iloc[_balanced(train_frame, n_src, rng)],
        "id": test_frame[inside].iloc[_balanced(test_frame[inside], n_id, rng)],
        "shifted": test_frame[~inside].iloc[_balanced(test_frame[~inside], n_shift, rng)],
    }
    pools = {k: (f["text"].tolist(), f["top_level"].to_numpy()) for k, f in frames.items()}
    data = _extract("newsgroups", model, MINILM_LAYERS,
                    dict(pooling="mean", tokenizer=tokenizer, batch_size=32), pools, cache_dir)

    def draw(seed):
        r = np.random.default_rng(seed)
        source = r.permutation(len(data.y["source"]))
        shifted = r.permutation(len(data.y["shifted"]))
        n_val = min(400, len(shifted) // 2)
        return dict(train=("source", source[: int(0.85 * len(source))]),
                    id=("id", np.arange(len(data.y["id"]))),
                    val=("shifted", shifted[:n_val]), shift=("shifted", shifted[n_val:][:300]))

    return [("newsgroups", data, draw)]


def load_digits_scenarios(cache_dir, quick):
    model = load_digit_cnn()
    images, labels = load_digits_28x28(return_X_y=True)
    if quick:
        images, labels = images[:400], labels[:400]
    pools = {"clean": (images, labels)}
    for kind in DIGIT_SHIFTS:  # one fixed draw of each shift: the same rows every seed
        pools[kind] = (shift_digits(images, kind, random_state=0), labels)
    data = _extract("digits", model, "all", dict(pooling="auto"), pools, cache_dir)
    out = []
    for kind in DIGIT_SHIFTS:
        def draw(seed, kind=kind):
            train, held = train_test_split(np.arange(len(labels)), test_size=0.5,
                                           stratify=labels, random_state=seed)
            held = np.random.default_rng(seed).permutation(held)
            n_val = min(400, len(held) // 2)
            return dict(train=("clean", train), id=("clean", held),
                        val=(kind, held[:n_val]), shift=(kind, held[n_val:]))

        out.append((f"digits-{kind}", data, draw))
    return out


LOADERS = {"tweets": load_tweets, "newsgroups": load_news, "digits": load_digits_scenarios}


def _rows(data, role):
    pool, index = role
    return data.F[pool][index], data.y[pool][index]


# ---------------------------------------------------------------- (a) selectivity


def selectivity_heads():
    return {"probe": default_probe(), "prototype": PrototypeClassifier(),
            "kNN": KNNInterpolatedClassifier(knn_weight=1.0)}


def part_a(name, data, draw, seeds):
    heads = selectivity_heads()
    scorers = {k: check_scoring(h) for k, h in heads.items()}
    picks = {h: [] for h in heads}
    per_layer = {}
    for seed in seeds:
        roles = draw(seed)
        F, y = _rows(data, roles["train"])
        F_id, y_id = _rows(data, roles["id"])
        train_ids = input_identities(
            [data.inputs[roles["train"][0]][i] for i in roles["train"][1]]
            if isinstance(data.inputs[roles["train"][0]], list)
            else data.inputs[roles["train"][0]][roles["train"][1]])
        id_inputs = data.inputs[roles["id"][0]]
        id_ids = input_identities([id_inputs[i] for i in roles["id"][1]]
                                  if isinstance(id_inputs, list) else id_inputs[roles["id"][1]])
        classes, freq = class_frequencies(y)
        c, c_id = (control_labels(train_ids, classes, freq, seed),
                   control_labels(id_ids, classes, freq, seed))
        task = score_layers(F, data.slices, y, heads, scorers, Splits(tests={"id": (F_id, y_id)}))
        control = score_layers(F, data.slices, c, heads, scorers,
                               Splits(tests={"id": (F_id, c_id), "train": (F, c)}))
        table = {}
        for r in task:
            table.setdefault((r["head"], r["layer"]), {})["acc"] = r["score"]
        for r in control:
            key = "control" if r["split"] == "id" else "memory"
            table[(r["head"], r["layer"])][key] = r["score"]
        for head in heads:
            acc = {layer: table[(head, layer)]["acc"] for layer in data.layers}
            sel = {layer: acc[layer] - table[(head, layer)]["control"] for layer in data.layers}
            by_acc, by_sel = max(acc, key=acc.get), max(sel, key=sel.get)
            picks[head].append((by_acc, by_sel, acc[by_acc], acc[by_sel]))
            for layer in data.layers:
                entry = per_layer.setdefault((head, layer), {"acc": [], "control": [],
                                                             "memory": []})
                for key in entry:
                    entry[key].append(table[(head, layer)][key])
    print(f"\n#### (a) {name}: selectivity vs accuracy, {len(seeds)} seeds "
          "(in-distribution test; mean ± 95% t-interval)\n")
    rows = []
    for (head, layer), e in per_layer.items():
        sel = np.subtract(e["acc"], e["control"])
        rows.append([head, _short(layer), _fmt(e["acc"]), _fmt(e["control"]), _fmt(sel),
                     _fmt(e["memory"])])
    print_table(rows, ["head", "layer", "task acc", "control acc (held out)", "selectivity",
                       "control acc (train rows)"])
    print()
    rows = []
    for head, p in picks.items():
        disagree = sum(a != s for a, s, _, _ in p)
        rows.append([head, ", ".join(_short(a) for a, _, _, _ in p),
                     ", ".join(_short(s) for _, s, _, _ in p), f"{disagree}/{len(p)}",
                     _fmt([x for _, _, x, _ in p]), _fmt([x for _, _, _, x in p])])
    print_table(rows, ["head", "best by accuracy (per seed)", "best by selectivity",
                       "disagree", "acc of acc pick", "acc of selectivity pick"])


# ---------------------------------------------------------------- (b) learning curves


def curve_heads():
    return {"GaussianNB": GaussianNB(), "LDA": LinearDiscriminantAnalysis(),
            "probe": default_probe(), "prototype": PrototypeClassifier()}


def curve_sizes(n_train, n_classes, quick):
    base = [8, 16, 32, 64, 128, 256, 512] if n_classes <= 4 else [20, 40, 80, 160, 320, 640]
    if quick:
        base = base[:3]
    return [s for s in base if s < n_train] + [n_train]


def part_b(name, data, draw, seeds, quick):
    heads = curve_heads()
    scorers = {k: check_scoring(h) for k, h in heads.items()}
    curves = {}
    sizes = None
    for seed in seeds:
        roles = draw(seed)
        F, y = _rows(data, roles["train"])
        F_id, y_id = _rows(data, roles["id"])
        sizes = curve_sizes(len(y), len(np.unique(y)), quick)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LDA: collinear variables below d rows
            rows = score_curves(F, data.slices, y, heads, scorers,
                                Splits(tests={"id": (F_id, y_id)}), sizes, random_state=seed)
        for r in rows:
            curves.setdefault((r["layer"], r["head"]), {}).setdefault(
                r["train_size"], []).append(r["score"])
    print(f"\n#### (b) {name}: learning curves per layer, {len(seeds)} seeds "
          "(in-distribution test accuracy, mean ± 95% t-interval)\n")
    rows = []
    for layer in data.layers:
        for size in sizes:
            rows.append([_short(layer), size] + [_fmt(curves[(layer, h)][size]) for h in heads])
    print_table(rows, ["layer", "train rows", *heads])
    print(f"\nWhere the probe overtakes (first size from which its mean stays ahead; "
          f"'never' / 'always'), {name}:\n")
    rows = []
    for layer in data.layers:
        row = [_short(layer)]
        for rival in ("GaussianNB", "LDA", "prototype"):
            ahead = [np.mean(curves[(layer, "probe")][s]) >= np.mean(curves[(layer, rival)][s])
                     for s in sizes]
            first = next((i for i in range(len(sizes)) if all(ahead[i:])), None)
            row.append("never" if first is None else "always" if first == 0 else sizes[first])
        best_small = max(heads, key=lambda h: np.mean(curves[(layer, h)][sizes[0]]))
        best_large = max(heads, key=lambda h: np.mean(curves[(layer, h)][sizes[-1]]))
        rows.append(row + [best_small, best_large])
    print_table(rows, ["layer", "probe ahead of GaussianNB from", "of LDA from",
                       "of prototype from", f"best at {sizes[0]} rows",
                       f"best at {sizes[-1]} rows"])


# ---------------------------------------------------------------- (c) zero-shot ILC


def part_c(name, data, draw, seeds):
    probe = default_probe()
    scorer = check_scoring(probe)
    heads, scorers = {"probe": probe}, {"probe": scorer}
    results = {}
    last = data.layers[-1]
    for seed in seeds:
        roles = draw(seed)
        F, y = _rows(data, roles["train"])
        F_val_all, y_val_all = _rows(data, roles["val"])
        F_shift, y_shift = _rows(data, roles["shift"])
        F_id, y_id = _rows(data, roles["id"])
        # every layer's probe trained on the source rows, scored on the shifted test
        tests = {"shift": (F_shift, y_shift), "id": (F_id, y_id)}
        for n in VAL_SIZES:
            tests[f"val{n}"] = (F_val_all[:n], y_val_all[:n])
        rows = score_layers(F, data.slices, y, heads, scorers, Splits(tests=tests))
        score = {(r["layer"], r["split"]): r["score"] for r in rows}
        cv = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(F, y))
        cv_rows = score_layers(F, data.slices, y, heads, scorers, Splits(cv=cv))
        costs = dict.fromkeys(data.layers, float("nan"))
        by_cv = choose_layer({r["layer"]: r["score"] for r in cv_rows}, costs)
        shift = {layer: score[(layer, "shift")] for layer in data.layers}
        oracle = max(shift, key=shift.get)
        out = {"last layer": (shift[last], last), "ILC, CV on source": (shift[by_cv], by_cv),
               "oracle layer": (shift[oracle], oracle)}
        cols = data.slices[last]
        for n in VAL_SIZES:
            chosen = choose_layer({layer: score[(layer, f"val{n}")] for layer in data.layers},
                                  costs)
            out[f"ILC, {n} shifted val rows"] = (shift[chosen], chosen)
            retrained = clone(probe).fit(np.vstack([F[:, cols], F_val_all[:n, cols]]),
                                         np.concatenate([y, y_val_all[:n]]))
            out[f"last layer retrained + {n} shifted"] = (
                float(scorer(retrained, F_shift[:, cols], y_shift)), last)
        results[seed] = out
    print(f"\n#### (c) {name}: shifted test accuracy, {len(seeds)} seeds "
          f"(mean ± 95% t-interval; {len(_rows(data, draw(seeds[0])['shift'])[1])} test rows)\n")
    methods = list(results[seeds[0]])
    rows = []
    for m in methods:
        accs = [results[s][m][0] for s in seeds]
        layers = [_short(results[s][m][1]) for s in seeds]
        rows.append([m, _fmt(accs), ", ".join(layers)])
    for n in VAL_SIZES:
        diff = [results[s][f"ILC, {n} shifted val rows"][0]
                - results[s][f"last layer retrained + {n} shifted"][0] for s in seeds]
        rows.append([f"ILC({n}) - retrained({n}), paired", _fmt(diff), ""])
    print_table(rows, ["method", "shifted acc", "layer per seed"])


def main(args):
    torch.set_num_threads(1)
    tmp = None
    cache_dir = args.cache_dir
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_seeds_")
        cache_dir = tmp.name
    start = time.perf_counter()
    try:
        for loader in args.scenarios:
            for name, data, draw in LOADERS[loader](cache_dir, args.quick):
                part_start = time.perf_counter()
                if "a" in args.parts and not name.startswith("digits-") or (
                        "a" in args.parts and name == "digits-rotation"):
                    part_a(name.split("-")[0], data, draw, args.seeds)
                if "b" in args.parts and loader in ("tweets", "digits") and (
                        name in ("tweets", "digits-rotation")):
                    part_b(name.split("-")[0], data, draw, args.seeds, args.quick)
                if "c" in args.parts:
                    part_c(name, data, draw, args.seeds)
                print(f"[{name}] head work {time.perf_counter() - part_start:.0f} s",
                      flush=True)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"\ntotal {time.perf_counter() - start:.0f} s (one torch thread; a loaded, shared "
          "2-core machine)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c"], choices=["a", "b", "c"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--scenarios", nargs="+", default=["tweets", "newsgroups", "digits"],
                        choices=["tweets", "newsgroups", "digits"])
    parser.add_argument("--cache-dir", default=None,
                        help="keep the activation cache here (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true", help="tiny pools, for a smoke test")
    main(parser.parse_args())
