"""Control tasks: labels at random per input identity, with the task's frequencies."""

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal

from sklearn_layers._selection._control import (
    class_frequencies,
    control_labels,
    control_seed,
    difference_interval,
    input_identities,
)


def _labels(X, y, seed=0, frequencies_from=None, **kw):
    classes, freq = class_frequencies(y if frequencies_from is None else frequencies_from)
    return control_labels(input_identities(X, **kw), classes, freq, seed)


def test_identical_array_rows_share_a_label_and_distinct_rows_do_not_all():
    rng = np.random.RandomState(0)
    distinct = rng.randn(300, 4)
    copies = rng.randint(0, 300, 600)
    X = np.vstack([distinct, distinct[copies]])
    y = rng.randint(0, 3, len(X))
    labels = _labels(X, y)
    assert_array_equal(labels[300:], labels[copies])
    # distinct rows are not all given one label (three classes, 300 draws)
    assert len(np.unique(labels[:300])) == 3


def test_identity_is_the_input_row_not_its_position():
    """The same rows in another order, or in another call (a test set), keep their labels."""
    rng = np.random.RandomState(1)
    X = rng.randn(200, 3)
    y = rng.randint(0, 2, 200)
    classes, freq = class_frequencies(y)
    labels = control_labels(input_identities(X), classes, freq, 7)
    order = rng.permutation(200)
    assert_array_equal(control_labels(input_identities(X[order]), classes, freq, 7),
                       labels[order])
    assert_array_equal(control_labels(input_identities(X[:50]), classes, freq, 7), labels[:50])


@pytest.mark.parametrize("kind", ["text", "tensor", "dataframe", "dict"])
def test_every_input_kind_names_identical_rows_alike(kind):
    rng = np.random.RandomState(2)
    base = rng.randn(40, 3).astype(np.float32)
    rows = np.r_[np.arange(40), np.arange(40)[::-1]]
    if kind == "text":
        X = [f"sentence {i}" for i in rows]
    elif kind == "tensor":
        X = torch.from_numpy(base[rows])
    elif kind == "dataframe":
        X = pd.DataFrame(base[rows], columns=["a", "b", "c"])
    else:
        X = {"input_ids": np.arange(40)[rows][:, None].repeat(5, 1),
             "attention_mask": np.ones((80, 5), dtype=np.int64)}
    identities = input_identities(X)
    assert len(identities) == 80
    assert identities[:40] == identities[40:][::-1]
    assert len(set(identities)) == 40


def test_text_identity_ignores_the_tokenizer():
    """Two identical strings are one input, whatever the network reads from them."""
    a = input_identities(["a b", "c", "a b"])
    assert a[0] == a[2] != a[1]


def test_items_without_a_digest_are_refused():
    class Opaque:
        pass

    with pytest.raises(ValueError, match="no digest"):
        input_identities([Opaque(), Opaque()], preprocess=lambda rows: torch.zeros(len(rows), 2))


def test_labels_follow_the_task_frequencies_in_expectation():
    """Over many identities, each class's share is within 4 binomial sds of its frequency."""
    rng = np.random.RandomState(3)
    y = rng.choice([0, 1, 2, 3], size=20_000, p=[0.55, 0.25, 0.15, 0.05])
    labels = _labels(rng.randn(20_000, 2), y)
    p = np.bincount(y, minlength=4) / len(y)
    share = np.bincount(labels, minlength=4) / len(labels)
    assert np.all(np.abs(share - p) <= 4 * np.sqrt(p * (1 - p) / len(y)))


def test_labels_ignore_the_task_labels():
    """The control label of a row says nothing about its task label (chi-square, 4 sds)."""
    rng = np.random.RandomState(4)
    y = rng.randint(0, 2, 20_000)
    labels = _labels(rng.randn(20_000, 2), y)
    agree = np.mean(labels == y)
    p = np.bincount(y) / len(y)
    expected = float(np.sum(p**2))
    assert abs(agree - expected) <= 4 * np.sqrt(expected * (1 - expected) / len(y))


def test_seeded():
    rng = np.random.RandomState(5)
    X, y = rng.randn(500, 2), rng.randint(0, 2, 500)
    assert_array_equal(_labels(X, y, seed=11), _labels(X, y, seed=11))
    assert np.mean(_labels(X, y, seed=11) != _labels(X, y, seed=12)) > 0.3
    assert control_seed(3) == control_seed(3)
    assert control_seed(np.random.RandomState(3)) == control_seed(3)


def test_string_classes_and_one_frequent_class():
    y = np.array(["spam"] * 9 + ["ham"])
    labels = _labels(np.arange(10.0)[:, None], y)
    assert set(labels) <= {"spam", "ham"}
    classes, freq = class_frequencies(y)
    assert_array_equal(classes, ["ham", "spam"])
    assert_allclose(freq, [0.1, 0.9])


def test_difference_interval_adds_the_half_widths_in_quadrature():
    # task 0.80 [0.76, 0.83], control 0.30 [0.26, 0.33]: by hand
    low, high = difference_interval(0.80, 0.76, 0.83, 0.30, 0.26, 0.33)
    assert_allclose(low, 0.50 - np.hypot(0.04, 0.03))
    assert_allclose(high, 0.50 + np.hypot(0.03, 0.04))


def test_items_under_any_preprocess_are_named_by_their_digest():
    """A lambda preprocess (which the cache cannot name) still reads identical items alike."""
    items = [np.full((2, 2), i, dtype=np.float32) for i in (0, 1, 0, 2)]
    identities = input_identities(items, preprocess=lambda rows: torch.stack(
        [torch.from_numpy(r).flatten() for r in rows]))
    assert identities[0] == identities[2]
    assert len(set(identities)) == 3
