"""The demo scenarios: a real network, real data, a layer sweep under shift."""

from dataclasses import dataclass

import numpy as np

from .._selection import default_probe, layer_sweep
from ..heads import KNNInterpolatedClassifier, PrototypeClassifier
from . import _assets


@dataclass
class Scenario:
    """What a scenario produced: the sweep table and how to read it."""

    name: str
    description: str
    table: object
    id_split: str
    shifted_splits: list


def demo_heads():
    """The three heads the demo compares on every layer."""
    return {
        "logistic": default_probe(),
        "prototype": PrototypeClassifier(),
        "knn-interpolated": KNNInterpolatedClassifier(),
    }


def digits_scenario(*, pooling="auto", seed=0, verbose=True, n_train=None):
    """MNIST-trained CNN on scikit-learn's digits, under four shifts.

    Train on half of the digits; test on the other half as it is
    (``in-distribution``) and rotated, noisy, translated and scaled.
    """
    from sklearn.model_selection import train_test_split

    model = _assets.load_digit_cnn()
    images, labels = _assets.load_digits_28()
    X_train, X_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.5, stratify=labels, random_state=seed
    )
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    shifts = ["rotation", "noise", "translation", "scale"]
    test_sets = {"in-distribution": (X_test, y_test)}
    for kind in shifts:
        test_sets[kind] = (_assets.shift_digits(X_test, kind, seed=seed), y_test)
    table = layer_sweep(
        model, X_train, y_train, layers="all", heads=demo_heads(), pooling=pooling,
        test_sets=test_sets, verbose=verbose,
    )
    return Scenario(
        name="digits",
        description=(
            "digit-recognizer-py's MNIST CNN on scikit-learn digits (28x28); "
            f"train {len(X_train)}, test {len(X_test)} per split; pooling={pooling!r}"
        ),
        table=table,
        id_split="in-distribution",
        shifted_splits=shifts,
    )


def tweets_scenario(*, pooling="mean", seed=0, verbose=True, n_test=400, n_train=None):
    """all-MiniLM-L6-v2 on 2016 election tweets: who wrote it, as time moves on.

    Train on original tweets from January to June 2016; test on held-out tweets
    of the same months (``in-distribution``) and on August-September 2016
    (``shifted``), ``n_test`` each.
    """
    model, tokenizer = _assets.load_minilm()
    tweets = _assets.load_election_tweets()
    rng = np.random.default_rng(seed)
    month = tweets["time"].dt.month
    early = tweets[month <= 6].index.to_numpy()
    late = tweets[month.isin([8, 9])].index.to_numpy()
    early = rng.permutation(early)
    id_test, train = early[:n_test], early[n_test:]
    if n_train is not None:
        train = train[:n_train]
    shifted = rng.choice(late, size=min(n_test, len(late)), replace=False)

    def take(index):
        rows = tweets.loc[index]
        return rows["text"].tolist(), rows["author"].to_numpy()

    X_train, y_train = take(train)
    layers = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
    table = layer_sweep(
        model, X_train, y_train, layers=layers, heads=demo_heads(), pooling=pooling,
        test_sets={"in-distribution": take(id_test), "shifted": take(shifted)},
        tokenizer=tokenizer, batch_size=64, verbose=verbose,
    )
    return Scenario(
        name="tweets",
        description=(
            "all-MiniLM-L6-v2 on 2016 election tweets, author Clinton vs Trump; "
            f"train Jan-Jun ({len(X_train)}), test Jan-Jun held out ({len(id_test)}) "
            f"and Aug-Sep ({len(shifted)}); pooling={pooling!r}"
        ),
        table=table,
        id_split="in-distribution",
        shifted_splits=["shifted"],
    )


SCENARIOS = {"tweets": tweets_scenario, "digits": digits_scenario}
