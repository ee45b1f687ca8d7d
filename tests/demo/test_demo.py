"""The main job end to end, on the real assets installed by `make test`."""

import numpy as np
import pandas as pd
import pytest

from sklearn_layers.demo._cli import main


def test_digits_demo_end_to_end(tmp_path, capsys):
    main(["demo", "--scenario", "digits", "--output", str(tmp_path), "--quiet"])
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "digits_layer_sweep.csv")
    assert (tmp_path / "digits_layer_sweep.png").stat().st_size > 10_000
    assert len(table) == 5 * 3 * 5  # layers x heads x splits
    assert set(table["split"]) == {"in-distribution", "rotation", "noise", "translation",
                                   "scale"}
    in_dist = table[(table["split"] == "in-distribution") & (table["head"] == "logistic")]
    assert in_dist["score"].max() > 0.95
    assert "Best layer per head and split" in out and "fc_layers.1" in out


@pytest.mark.slow
def test_tweets_demo_end_to_end_small(tmp_path, capsys):
    main(["demo", "--scenario", "tweets", "--output", str(tmp_path), "--quiet",
          "--n-train", "300", "--n-test", "150"])
    table = pd.read_csv(tmp_path / "tweets_layer_sweep.csv")
    assert len(table) == 7 * 3 * 2
    assert list(table["layer"].unique()) == ["embeddings"] + [
        f"encoder.layer.{i}" for i in range(6)
    ]
    logistic = table[table["head"] == "logistic"]
    assert logistic["score"].max() > 0.8  # authorship is easy in distribution
    assert "shifted" in capsys.readouterr().out


@pytest.mark.slow
def test_newsgroups_demo_end_to_end_small(tmp_path, capsys):
    main(["demo", "--scenario", "newsgroups", "--output", str(tmp_path), "--quiet",
          "--n-train", "80", "--n-test", "40"])
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "newsgroups_layer_sweep.csv")
    assert (tmp_path / "newsgroups_layer_sweep.png").stat().st_size > 10_000
    assert len(table) == 7 * 3 * 2
    assert set(table["split"]) == {"in-distribution", "shifted"}
    logistic = table[table["head"] == "logistic"].set_index(["layer", "split"])["score"]
    # Four balanced topics: chance is 0.25. 40 test posts per split.
    assert logistic.xs("in-distribution", level="split").max() > 0.7
    assert "(80)" in out and "(40)" in out and "first 128 tokens" in out


def test_newsgroups_splits_are_disjoint_balanced_and_labelled_by_topic():
    from sklearn_layers.datasets import load_newsgroups
    from sklearn_layers.demo._scenarios import (
        NEWSGROUPS_SHIFTED,
        NEWSGROUPS_TRAIN,
        _sample,
    )

    rng = np.random.default_rng(0)
    pool = load_newsgroups(subset="test", categories=list(NEWSGROUPS_TRAIN)).frame
    sample = _sample(pool, 100, rng)
    assert sample["newsgroup"].value_counts().tolist() == [25, 25, 25, 25]
    assert sample.index.is_unique
    assert [g.split(".")[0] for g in NEWSGROUPS_TRAIN] == [
        g.split(".")[0] for g in NEWSGROUPS_SHIFTED
    ] == ["comp", "rec", "sci", "talk"]
    assert not set(NEWSGROUPS_TRAIN) & set(NEWSGROUPS_SHIFTED)


def test_n_test_is_for_text_scenarios_only(tmp_path):
    with pytest.raises(SystemExit, match="text scenarios"):
        main(["demo", "--scenario", "digits", "--output", str(tmp_path), "--n-test", "5"])


@pytest.mark.parametrize("argv, expected", [([], None), (["--precision", "bfloat16"], "bfloat16")])
def test_precision_reaches_the_scenario(tmp_path, monkeypatch, argv, expected):
    from sklearn_layers.demo import _cli

    received = {}

    class Reached(Exception):
        pass

    def scenario(**kwargs):
        received.update(kwargs)
        raise Reached

    monkeypatch.setitem(_cli.SCENARIOS, "digits", scenario)
    with pytest.raises(Reached):
        main(["demo", "--scenario", "digits", "--output", str(tmp_path), *argv])
    assert received.get("precision") == expected
    with pytest.raises(SystemExit):
        main(["demo", "--scenario", "digits", "--precision", "int8"])
