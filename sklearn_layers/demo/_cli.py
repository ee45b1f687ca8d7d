"""``python -m sklearn_layers demo``: run a scenario, print the table, save CSV + PNG."""

import argparse
import sys
import time
from pathlib import Path

from ..utils._threads import torch_threads
from ._scenarios import SCENARIOS

_TEXT_SCENARIOS = ("tweets", "newsgroups")


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m sklearn_layers",
        description="Layer sweeps of real pretrained networks on real data, offline.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="score every layer x head in and out of distribution",
        description=(
            "tweets (default): all-MiniLM-L6-v2 on 2016 election tweets, trained on "
            "January-June, tested on held-out January-June and on August-September. "
            "newsgroups: all-MiniLM-L6-v2 on 20 Newsgroups, topic comp/rec/sci/talk, "
            "trained on four newsgroups and tested on them and on four sibling "
            "newsgroups (first 128 tokens of each post). "
            "digits: an MNIST CNN on scikit-learn's digits under rotation, noise, "
            "translation and scale."
        ),
    )
    demo.add_argument("--scenario", choices=sorted(SCENARIOS), default="tweets")
    demo.add_argument("--output", default="demo_output", help="folder for the CSV and PNG")
    demo.add_argument("--pooling", default=None,
                      help="pooling of every layer (default: mean for text, auto for images)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--n-train", type=int, default=None,
                      help="use only this many training rows (quick runs; the "
                           "newsgroups scenario uses 1200 by default)")
    demo.add_argument("--n-test", type=int, default=None,
                      help="rows per test split of the text scenarios (default 400)")
    demo.add_argument("--threads", type=int, default=1,
                      help="torch threads (one is fastest on small machines)")
    demo.add_argument("--precision", choices=["float32", "bfloat16", "float16"],
                      default="float32",
                      help="arithmetic of the network's forward pass (bfloat16: about "
                           "1.8x faster on a CPU with AVX512-BF16 or AMX)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _pivot(table):
    pivot = table.pivot_table(index=["layer_index", "layer"], columns=["head", "split"],
                              values="score")
    return pivot.droplevel("layer_index")


def _costs(table):
    """Per layer: the price of reaching it, and what fitting each head took."""
    per_layer = table.groupby(["layer_index", "layer"], sort=True)
    costs = per_layer[["forward_share", "seconds_per_row"]].first()
    costs["ms_per_row"] = 1000 * costs.pop("seconds_per_row")
    fit = table.pivot_table(index=["layer_index", "layer"], columns="head",
                            values="fit_time", aggfunc="mean")
    fit.columns = [f"fit s ({head})" for head in fit.columns]
    return costs.join(fit).droplevel("layer_index")


def _winners(scenario):
    table = scenario.table
    lines = []
    for head in table["head"].unique():
        for split in [scenario.id_split, *scenario.shifted_splits]:
            rows = table[(table["head"] == head) & (table["split"] == split)]
            best = rows.loc[rows["score"].idxmax()]
            last = rows.loc[rows["layer_index"].idxmax()]
            lines.append(
                f"  {head:<17} {split:<16} best layer {best['layer']:<18} "
                f"{best['score']:.3f}   last layer {last['layer']:<18} {last['score']:.3f}"
            )
    return "\n".join(lines)


def _plot(scenario, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .._display import LayerSweepDisplay

    # score per layer | score against the layer's price; one legend for both
    fig, (by_layer, by_cost) = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True,
                                            layout="constrained")
    common = dict(score_name="accuracy",
                  chance_level=getattr(scenario, "chance_level", None))
    LayerSweepDisplay.from_sweep(scenario.table, ax=by_layer, legend=False, **common)
    LayerSweepDisplay.from_sweep(scenario.table, ax=by_cost, kind="cost", **common)
    by_cost.set_ylabel("")
    by_layer.set_title("accuracy per layer", fontsize="medium")
    by_cost.set_title("accuracy against the cost of reaching the layer (Pareto fronts)",
                      fontsize="medium")
    fig.suptitle(scenario.description, fontsize="small")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(args):
    """Run one demo scenario and write its outputs; returns the Scenario."""
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    kwargs = {"seed": args.seed, "verbose": not args.quiet}
    if args.n_train is not None:
        kwargs["n_train"] = args.n_train
    if args.n_test is not None:
        if args.scenario not in _TEXT_SCENARIOS:
            raise SystemExit(
                "--n-test applies to the text scenarios (tweets, newsgroups) only"
            )
        kwargs["n_test"] = args.n_test
    if args.precision != "float32":
        kwargs["precision"] = args.precision
    if args.pooling is not None:
        kwargs["pooling"] = int(args.pooling) if args.pooling.isdigit() else args.pooling
    start = time.perf_counter()
    with torch_threads(args.threads):
        scenario = SCENARIOS[args.scenario](**kwargs)
    elapsed = time.perf_counter() - start
    csv_path = output / f"{scenario.name}_layer_sweep.csv"
    png_path = output / f"{scenario.name}_layer_sweep.png"
    scenario.table.to_csv(csv_path, index=False)
    _plot(scenario, png_path)
    with _pandas_wide():
        print(f"\n{scenario.description}\n")
        print(_pivot(scenario.table).to_string(float_format=lambda v: f"{v:.3f}"))
        unit = scenario.table["cost_unit"].iloc[0]
        print(f"\nThe price of each layer: share of a full forward pass ({unit}), "
              "extraction time per row alone, and fit time per head:")
        print(_costs(scenario.table).to_string(float_format=lambda v: f"{v:.3f}"))
    print("\nBest layer per head and split (vs the last layer):")
    print(_winners(scenario))
    print(f"\nwrote {csv_path} and {png_path} in {elapsed:.0f} s")
    return scenario


class _pandas_wide:
    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.width", 200, "display.max_columns", 50)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def main(argv=None):
    """Entry point of ``python -m sklearn_layers``."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        run_demo(args)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
