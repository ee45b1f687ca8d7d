"""Early exit against one layer: FLOPs, wall time and accuracy, in and out of distribution.

Run: ``.venv/bin/python benchmarks/bench_early_exit.py [--scenarios tweets newsgroups digits]
[--plot docs/_static/early_exit]``

Three scenarios, one torch thread, the extractor's batch size 64:

- tweets: all-MiniLM-L6-v2 (mean pooling) on 2016 election tweets, author;
  train on ``--tweets-train`` tweets of January-June, test on held-out tweets of
  the same months and on August-September (the shift).
- newsgroups: MiniLM (first 128 tokens) on 20 Newsgroups, top-level label;
  train graphics/autos/crypt/guns, test the same groups and
  mac.hardware/hockey/med/mideast (the shift).
- digits: the MNIST CNN of ``digit-recognizer-py`` on scikit-learn's digits
  (28 x 28), train on half; test on the other half as it is and rotated,
  noisy, translated, scaled.

For each, an ``EarlyExitClassifier`` over every block ("EE all", against the
last layer's head) and one over the blocks up to the best single layer ("EE
best", against that layer's head). The best single layer is the one an
``IntermediateLayerClassifier`` picks: the best 5-fold CV accuracy of the
default probe, ties to the earlier layer (read from the same cross-fitted
predictions the early-exit calibration uses). ``max_score_drop=0.005``. On
the shifted splits of tweets and digits, a third cascade, "EE best, X_val",
has EE best's exits and heads but thresholds calibrated on ``--n-val``
labelled rows of the shifted distribution (``fit(..., X_val=, y_val=)``;
Aug-Sep tweets that are not test rows, training digits shifted alike).

Accuracy and FLOPs share on the test splits are computed from every exit's
head on every test row (one full forward per row, then the cascade's rule),
which is what ``predict`` does row by row (checked on the in-distribution
split: the exits ``predict`` reports are compared). "FLOPs b1" is the mean
share of a full forward pass per row one row at a time; "FLOPs b64" is the
simulated share in batches of 64 under the fitted stages (recomputation
included). Wall time: ``predict`` of the in-distribution rows, at batch size 1
(``--rows-b1`` rows, one call each, the models interleaved row by row) and in
one call at batch size 64 (best of ``--rounds`` interleaved rounds), each
divided by the single layer's time in the same run. The single layer's
deployment is a one-exit ``EarlyExitClassifier``: the forward stops right
after that layer, as a fitted ILC's does.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import clone

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from sklearn_layers import EarlyExitClassifier, LayerFeatureTransformer  # noqa: E402
from sklearn_layers._selection._early_exit import exit_table  # noqa: E402
from sklearn_layers._selection._exit_schedule import simulated_cost  # noqa: E402
from sklearn_layers._selection._exit_thresholds import (  # noqa: E402
    first_exits,
    operating_point,
)

MINILM_LAYERS = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
DROP = 0.005


def tweets(args):
    from sklearn_layers.datasets import load_election_tweets
    from sklearn_layers.models import load_minilm

    model, tokenizer = load_minilm()
    frame = load_election_tweets().frame
    rng = np.random.default_rng(0)
    month = frame["time"].dt.month
    early = rng.permutation(frame[month <= 6].index.to_numpy())
    late = rng.permutation(frame[month.isin([8, 9])].index.to_numpy())
    n_test = args.tweets_test

    def take(index):
        rows = frame.loc[index]
        return rows["text"].tolist(), rows["author"].to_numpy()

    extractor = LayerFeatureTransformer(model, pooling="mean", tokenizer=tokenizer,
                                        batch_size=64)
    splits = {"in-distribution": take(early[:n_test]), "Aug-Sep": take(late[:n_test])}
    # a few labelled rows of the shifted period, none of them test rows
    validation = {"Aug-Sep": take(late[n_test:n_test + args.n_val])}
    train = take(early[n_test:n_test + args.tweets_train])
    return extractor, MINILM_LAYERS, train, splits, validation


def newsgroups(args):
    from sklearn_layers.datasets import load_newsgroups
    from sklearn_layers.demo._scenarios import (
        NEWSGROUPS_SHIFTED,
        NEWSGROUPS_TRAIN,
        _sample,
    )
    from sklearn_layers.models import load_minilm

    model, tokenizer = load_minilm(max_length=128)
    rng = np.random.default_rng(0)
    train_pool = load_newsgroups(subset="train", categories=list(NEWSGROUPS_TRAIN)).frame
    test_pool = load_newsgroups(
        subset="test", categories=list(NEWSGROUPS_TRAIN + NEWSGROUPS_SHIFTED)).frame
    inside = test_pool["newsgroup"].isin(NEWSGROUPS_TRAIN)

    def take(rows):
        return rows["text"].tolist(), rows["top_level"].to_numpy()

    train = take(_sample(train_pool, args.news_train, rng))
    splits = {"in-distribution": take(_sample(test_pool[inside], args.news_test, rng)),
              "sibling groups": take(_sample(test_pool[~inside], args.news_test, rng))}
    extractor = LayerFeatureTransformer(model, pooling="mean", tokenizer=tokenizer,
                                        batch_size=64)
    return extractor, MINILM_LAYERS, train, splits, {}


def digits(args):
    from sklearn.model_selection import train_test_split

    from sklearn_layers.datasets import load_digits_28x28, shift_digits
    from sklearn_layers.models import load_digit_cnn

    model = load_digit_cnn()
    images, labels = load_digits_28x28(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.5, stratify=labels, random_state=0)
    splits, validation = {"in-distribution": (X_test, y_test)}, {}
    for kind in ("rotation", "noise", "translation", "scale"):
        splits[kind] = (shift_digits(X_test, kind, random_state=0), y_test)
        # training images shifted alike (another noise draw): never test rows
        validation[kind] = (shift_digits(X_train[:args.n_val], kind, random_state=1),
                            y_train[:args.n_val])
    extractor = LayerFeatureTransformer(model, batch_size=64)
    return extractor, "all", (X_train, y_train), splits, validation


SCENARIOS = {"tweets": tweets, "newsgroups": newsgroups, "digits": digits}


def rows_of(X, index):
    return X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]


def measure(clf, X, y):
    """Accuracy, FLOPs share at batch 1 and (simulated) 64, fractions per exit."""
    conf, correct = exit_table(clf, X, y)
    exits = first_exits(conf, clf.thresholds_)
    accuracy, cost, fractions = operating_point(exits, correct, clf.exit_costs_)
    b64 = simulated_cost(exits, clf.exit_costs_, clf._stages, 64)
    return {"accuracy": accuracy, "b1": cost, "b64": b64, "fractions": fractions,
            "exits": exits, "correct": correct}


def wall_times(models, X, n_b1, rounds):
    """Per model: seconds at batch 1 over n_b1 rows, and best of rounds at batch 64."""
    for clf in models.values():  # the rows were extracted already: compute, do not serve
        clf.extractor_.set_params(cache=None)
    b1 = dict.fromkeys(models, 0.0)
    for i in range(min(n_b1, len(X))):
        row = rows_of(X, [i])
        for name, clf in models.items():
            start = time.perf_counter()
            clf.predict(row)
            b1[name] += time.perf_counter() - start
    b64 = dict.fromkeys(models, np.inf)
    for _ in range(rounds):
        for name, clf in models.items():
            start = time.perf_counter()
            clf.predict(X)
            b64[name] = min(b64[name], time.perf_counter() - start)
    return b1, b64


def run(name, args):
    extractor, layers, (X_train, y_train), splits, validation = SCENARIOS[name](args)
    start = time.perf_counter()
    ee_all = EarlyExitClassifier(extractor, exits=layers, max_score_drop=DROP).fit(
        X_train, y_train)
    fit_seconds = time.perf_counter() - start
    names = ee_all.exit_layers_
    scores = np.array([ee_all.exit_scores_[n] for n in names])
    best = int(np.argmax(scores))  # the ILC's rule: best CV accuracy, earlier on ties
    ee_best = EarlyExitClassifier(extractor, exits=names[: best + 1],
                                  max_score_drop=DROP).fit(X_train, y_train)
    single = {n: EarlyExitClassifier(extractor, exits=[n]).fit(X_train, y_train)
              for n in (names[best], names[-1])}
    print(f"\n## {name}: train {len(y_train)}, exits {names}, fit of EE all "
          f"{fit_seconds:.1f} s (forward included)")
    print("CV accuracy per exit: " + ", ".join(f"{n} {s:.3f}" for n, s in
                                                 zip(names, scores)))
    print("FLOPs share per exit: " + ", ".join(f"{n} {c:.3f}" for n, c in
                                                 zip(names, ee_all.exit_costs_)))
    print(f"EE best: thresholds {np.round(ee_best.thresholds_, 3).tolist()}, stages "
          f"{ee_best.stages_}, calibration accuracy {ee_best.calibration_score_:.3f} vs "
          f"reference {ee_best.reference_score_:.3f}")
    results = []
    for split, (X, y) in splits.items():
        m_all, m_best = measure(ee_all, X, y), measure(ee_best, X, y)
        result = {"split": split, "all": m_all, "best": m_best,
                  "acc_best": m_all["correct"][:, best].mean(),
                  "acc_last": m_all["correct"][:, -1].mean()}
        if split in validation:  # thresholds calibrated on a few shifted rows
            X_val, y_val = validation[split]
            ee_val = clone(ee_best).fit(X_train, y_train, X_val=X_val, y_val=y_val)
            result["val"] = measure(ee_val, X, y)
        results.append(result)
    X_id, y_id = splits["in-distribution"]
    predicted, exits = ee_best.predict(X_id, return_exit=True)
    simulated = np.asarray(ee_best.exit_layers_, dtype=object)[results[0]["best"]["exits"]]
    agreement = float(np.mean(exits == simulated))
    models = {"EE best": ee_best, "best layer": single[names[best]],
              "EE all": ee_all, "last layer": single[names[-1]]}
    b1, b64 = wall_times(models, X_id, args.rows_b1, args.rounds)
    cost_best = ee_all.exit_costs_[best]
    cost_last = ee_all.exit_costs_[-1]
    print(f"predict's exits equal the simulated ones on {agreement:.1%} of the "
          f"in-distribution rows; accuracy of predict {np.mean(predicted == y_id):.3f}")
    table = []
    for r in results:
        compared = [("EE best", r["best"], r["acc_best"], cost_best, names[best]),
                    ("EE all", r["all"], r["acc_last"], cost_last, names[-1])]
        if "val" in r:
            compared.append((f"EE best, X_val {args.n_val} shifted", r["val"],
                             r["acc_best"], cost_best, names[best]))
        for label, m, ref_acc, ref_cost, ref_name in compared:
            row = [name, r["split"], f"{label} vs {ref_name}",
                   f"{100 * (m['accuracy'] - ref_acc):+.1f}",
                   f"{m['accuracy']:.3f} / {ref_acc:.3f}",
                   f"{m['b1']:.3f} / {ref_cost:.3f}",
                   f"{1 - m['b1'] / ref_cost:.0%}", f"{1 - m['b64'] / ref_cost:.0%}"]
            if r["split"] == "in-distribution":
                ref_model = "best layer" if label == "EE best" else "last layer"
                row += [f"{1 - b1[label] / b1[ref_model]:.0%}",
                        f"{1 - b64[label] / b64[ref_model]:.0%}"]
            else:
                row += ["", ""]
            row.append(" ".join(f"{f:.2f}" for f in m["fractions"]))
            table.append(row)
    return table, ee_all, splits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--tweets-train", type=int, default=600)
    parser.add_argument("--tweets-test", type=int, default=300)
    parser.add_argument("--news-train", type=int, default=400)
    parser.add_argument("--news-test", type=int, default=200)
    parser.add_argument("--rows-b1", type=int, default=64)
    parser.add_argument("--n-val", type=int, default=300,
                        help="labelled shifted rows calibrating 'EE best, X_val'")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plot", default=None,
                        help="PNG path prefix: <prefix>_<scenario>.png, each scenario's "
                             "curve of 'EE all' on its in-distribution split")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    headers = ["scenario", "split", "cascade vs single layer", "acc. diff (points)",
               "accuracy EE / single", "FLOPs share b1 EE / single", "FLOPs saving b1",
               "FLOPs saving b64 (sim.)", "wall saving b1", "wall saving b64",
               "fraction of rows per exit"]
    table = []
    for name in args.scenarios:
        rows, ee_all, splits = run(name, args)
        table += rows
        if args.plot:
            import matplotlib

            matplotlib.use("Agg")
            from sklearn_layers import EarlyExitDisplay

            X, y = splits["in-distribution"]
            display = EarlyExitDisplay.from_estimator(ee_all, X, y)
            display.ax_.set_title(f"{name}, in distribution (test rows): early exit vs "
                                  "one layer")
            path = f"{args.plot}_{name}.png"
            display.figure_.savefig(path, dpi=100)
            print(f"curve written to {path}")
    print(f"\nmax_score_drop={DROP}, one torch thread, batch size 64 (b64) or 1 (b1); "
          "savings are 1 - EE / single layer")
    print_table(table, headers)


if __name__ == "__main__":
    main()
