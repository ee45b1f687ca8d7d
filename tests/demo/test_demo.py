"""The main job end to end, on the real assets installed by `make test`."""

import numpy as np
import pandas as pd
import pytest
import torch

from sklearn_layers.demo import _assets
from sklearn_layers.demo._cli import main


def test_digit_cnn_reads_digits_like_its_own_training_data():
    model = _assets.load_digit_cnn()
    images, labels = _assets.load_digits_28()
    assert images.shape == (1797, 1, 28, 28) and images.dtype == np.float32
    with torch.no_grad():
        accuracy = (model(torch.as_tensor(images)).argmax(1).numpy() == labels).mean()
    assert accuracy > 0.75  # its own head, no training on digits (81.6% measured)


@pytest.mark.parametrize("kind", ["rotation", "noise", "translation", "scale"])
def test_shifts_change_images_but_keep_shape(kind):
    images, _ = _assets.load_digits_28()
    shifted = _assets.shift_digits(images[:20], kind)
    assert shifted.shape == (20, 1, 28, 28) and shifted.dtype == np.float32
    assert not np.allclose(shifted, images[:20])


def test_unknown_shift():
    with pytest.raises(ValueError, match="Unknown shift"):
        _assets.shift_digits(np.zeros((1, 1, 28, 28), np.float32), "blur")


def test_election_tweets():
    tweets = _assets.load_election_tweets()
    assert set(tweets["author"]) == {"HillaryClinton", "realDonaldTrump"}
    assert tweets["time"].is_monotonic_increasing
    assert len(tweets) > 5000


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
