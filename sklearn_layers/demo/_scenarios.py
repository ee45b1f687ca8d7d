"""The demo scenarios: a real network, real data, a layer sweep under shift."""

from dataclasses import dataclass

import numpy as np

from .._selection import default_probe, layer_sweep
from .._transformer import LayerFeatureTransformer
from ..datasets import (
    load_digits_28x28,
    load_election_tweets,
    load_newsgroups,
    shift_digits,
)
from ..heads import KNNInterpolatedClassifier, PrototypeClassifier
from ..models import load_digit_cnn, load_minilm

MINILM_LAYERS = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]


@dataclass
class Scenario:
    """What a scenario produced: the sweep table and how to read it."""

    name: str
    description: str
    table: object
    id_split: str
    shifted_splits: list
    chance_level: dict = None


def majority_rates(test_sets):
    """Split -> accuracy of always predicting that split's most frequent class."""
    rates = {}
    for split, (_, y) in test_sets.items():
        _, counts = np.unique(np.asarray(y), return_counts=True)
        rates[split] = float(counts.max() / counts.sum())
    return rates


def demo_heads():
    """The three heads the demo compares on every layer."""
    return [
        ("logistic", default_probe()),
        ("prototype", PrototypeClassifier()),
        ("knn-interpolated", KNNInterpolatedClassifier()),
    ]


def digits_scenario(*, pooling="auto", seed=0, verbose=True, n_train=None):
    """MNIST-trained CNN on scikit-learn's digits, under four shifts.

    Train on half of the digits; test on the other half as it is
    (``in-distribution``) and rotated, noisy, translated and scaled.
    """
    from sklearn.model_selection import train_test_split

    model = load_digit_cnn()
    images, labels = load_digits_28x28(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.5, stratify=labels, random_state=seed
    )
    if n_train is not None:
        X_train, y_train = X_train[:n_train], y_train[:n_train]
    shifts = ["rotation", "noise", "translation", "scale"]
    test_sets = {"in-distribution": (X_test, y_test)}
    for kind in shifts:
        test_sets[kind] = (shift_digits(X_test, kind, random_state=seed), y_test)
    extractor = LayerFeatureTransformer(model, pooling=pooling, verbose=verbose)
    table = layer_sweep(
        extractor, X_train, y_train, layers="all", estimators=demo_heads(),
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
        chance_level=majority_rates(test_sets),
    )


def tweets_scenario(*, pooling="mean", seed=0, verbose=True, n_test=400, n_train=None):
    """all-MiniLM-L6-v2 on 2016 election tweets: who wrote it, as time moves on.

    Train on original tweets from January to June 2016; test on held-out tweets
    of the same months (``in-distribution``) and on August-September 2016
    (``shifted``), ``n_test`` each.
    """
    model, tokenizer = load_minilm()
    tweets = load_election_tweets().frame
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
    test_sets = {"in-distribution": take(id_test), "shifted": take(shifted)}
    extractor = LayerFeatureTransformer(model, pooling=pooling, tokenizer=tokenizer,
                                        batch_size=64, verbose=verbose)
    table = layer_sweep(
        extractor, X_train, y_train, layers=MINILM_LAYERS, estimators=demo_heads(),
        test_sets=test_sets, verbose=verbose,
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
        chance_level=majority_rates(test_sets),
    )


NEWSGROUPS_TRAIN = ("comp.graphics", "rec.autos", "sci.crypt", "talk.politics.guns")
NEWSGROUPS_SHIFTED = (
    "comp.sys.mac.hardware", "rec.sport.hockey", "sci.med", "talk.politics.mideast",
)


def _sample(frame, n, rng):
    """``n`` rows of ``frame`` (all if fewer), the same number from each newsgroup."""
    groups = frame.groupby("newsgroup").indices
    per_group = -(-n // len(groups))
    picked = [rng.permutation(rows)[:per_group] for _, rows in sorted(groups.items())]
    return frame.iloc[np.sort(np.concatenate(picked))]


def newsgroups_scenario(*, pooling="mean", seed=0, verbose=True, n_test=400, n_train=1200,
                        max_length=128):
    """all-MiniLM-L6-v2 on 20 Newsgroups: the topic, in sibling newsgroups.

    The label is the top-level category (comp, rec, sci, talk). Train on
    ``n_train`` posts of comp.graphics, rec.autos, sci.crypt and
    talk.politics.guns (training part of the bydate split); test on ``n_test``
    posts of the same four groups from the test part (``in-distribution``) and
    on ``n_test`` posts of comp.sys.mac.hardware, rec.sport.hockey, sci.med and
    talk.politics.mideast (``shifted``), each sample balanced over the groups.
    Posts are truncated to their first ``max_length`` tokens.
    """
    model, tokenizer = load_minilm(max_length=max_length)
    rng = np.random.default_rng(seed)
    train_pool = load_newsgroups(subset="train", categories=list(NEWSGROUPS_TRAIN)).frame
    test_pool = load_newsgroups(
        subset="test", categories=list(NEWSGROUPS_TRAIN + NEWSGROUPS_SHIFTED)
    ).frame
    in_train_groups = test_pool["newsgroup"].isin(NEWSGROUPS_TRAIN)
    splits = {
        "train": _sample(train_pool, n_train, rng),
        "in-distribution": _sample(test_pool[in_train_groups], n_test, rng),
        "shifted": _sample(test_pool[~in_train_groups], n_test, rng),
    }
    data = {
        name: (rows["text"].tolist(), rows["top_level"].to_numpy())
        for name, rows in splits.items()
    }
    X_train, y_train = data.pop("train")
    extractor = LayerFeatureTransformer(model, pooling=pooling, tokenizer=tokenizer,
                                        batch_size=64, verbose=verbose)
    table = layer_sweep(
        extractor, X_train, y_train, layers=MINILM_LAYERS, estimators=demo_heads(),
        test_sets=data, verbose=verbose,
    )
    sizes = {name: len(rows) for name, rows in splits.items()}
    return Scenario(
        name="newsgroups",
        description=(
            "all-MiniLM-L6-v2 on 20 Newsgroups, label comp/rec/sci/talk; train "
            f"graphics/autos/crypt/guns ({sizes['train']}), test the same groups "
            f"({sizes['in-distribution']}) and mac.hardware/hockey/med/mideast "
            f"({sizes['shifted']}); first {max_length} tokens; pooling={pooling!r}"
        ),
        table=table,
        id_split="in-distribution",
        shifted_splits=["shifted"],
        chance_level=majority_rates(data),
    )


SCENARIOS = {
    "tweets": tweets_scenario,
    "digits": digits_scenario,
    "newsgroups": newsgroups_scenario,
}
