"""Learning curves per layer over cached features: sizes, subsets, scores, shape."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from scipy.stats import norm
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import check_scoring
from sklearn.model_selection import StratifiedKFold
from sklearn.model_selection._validation import _translate_train_sizes
from sklearn.naive_bayes import GaussianNB

from sklearn_layers._selection._curves import (
    nested_order,
    resolve_train_sizes,
    score_curves,
)
from sklearn_layers._selection._scoring import Splits


@pytest.mark.parametrize("sizes", [[0.1, 0.5, 1.0], [0.33, 0.66], [1, 7, 100], [0.05]])
def test_sizes_read_as_learning_curve_reads_them(sizes):
    assert_array_equal(resolve_train_sizes(sizes, 100), _translate_train_sizes(sizes, 100))


@pytest.mark.parametrize("sizes", [[0.0, 0.5], [1.5], [0, 10], [101], [], ["a"]])
def test_sizes_out_of_range_are_refused(sizes):
    with pytest.raises(ValueError, match="train_sizes"):
        resolve_train_sizes(sizes, 100)


def test_repeated_counts_warn_and_are_scored_once():
    with pytest.warns(RuntimeWarning, match="repeats"):
        assert_array_equal(resolve_train_sizes([0.011, 0.015, 0.5], 100), [1, 50])


def test_every_prefix_is_stratified_and_holds_every_class():
    rng = np.random.RandomState(0)
    y = rng.choice(4, size=1000, p=[0.6, 0.25, 0.1, 0.05])
    order = nested_order(y, np.random.RandomState(1))
    assert_array_equal(np.sort(order), np.arange(1000))
    p = np.bincount(y) / len(y)
    for n in range(4, 1001):
        counts = np.bincount(y[order[:n]], minlength=4)
        assert counts.min() >= 1
        # proportional up to the first rows placed ahead and the jitter
        assert np.abs(counts - n * p).max() <= 2.0


def _gaussians(n, rng, d=20, delta=0.25):
    """Two equally likely classes N(+-delta, I): GaussianNB's model is the true one."""
    y = np.arange(n) % 2
    rng.shuffle(y)
    X = rng.randn(n, d) + np.where(y[:, None] == 1, delta, -delta)
    return X, y


def _two_layers(n, rng):
    X, y = _gaussians(n, rng)
    return np.hstack([X, rng.randn(n, 20)]), y


SLICES = {"signal": slice(0, 20), "noise": slice(20, 40)}
HEADS = {"nb": GaussianNB(), "lr": LogisticRegression(C=1e4, max_iter=5000)}


def test_scores_are_those_of_a_head_fitted_on_the_subset():
    """Each point is clone(head).fit(subset).score(test), against a hand loop."""
    F, y = _two_layers(300, np.random.RandomState(0))
    F_test, y_test = _two_layers(200, np.random.RandomState(1))
    scorers = {k: check_scoring(h) for k, h in HEADS.items()}
    cv = list(StratifiedKFold(3).split(F, y))
    rows = score_curves(F, SLICES, y, HEADS, scorers,
                        Splits(cv=cv, tests={"test": (F_test, y_test)}), [10, 100],
                        random_state=3)
    assert {(r["train_size"], r["split"]) for r in rows} == {
        (10, "cv"), (100, "cv"), (10, "test"), (100, "test")}
    # the subsets score_curves draws: replay the generator in the same order
    rng = np.random.RandomState(3)
    folds = [train[nested_order(y[train], rng)] for train, _ in cv]
    whole = nested_order(y, rng)
    for r in rows:
        head, cols, size = HEADS[r["head"]], SLICES[r["layer"]], r["train_size"]
        if r["split"] == "test":
            rows_ = np.sort(whole[:size])
            expected = clone(head).fit(F[rows_][:, cols], y[rows_]).score(F_test[:, cols], y_test)
            assert r["score"] == pytest.approx(expected, abs=1e-12)
        else:
            expected = [clone(head).fit(F[order[:size]][:, cols], y[order[:size]])
                        .score(F[test][:, cols], y[test])
                        for order, (_, test) in zip(folds, cv)]
            assert r["score"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_a_size_below_the_number_of_classes_is_refused():
    F, y = _two_layers(60, np.random.RandomState(0))
    with pytest.raises(ValueError, match="at least one row per class"):
        score_curves(F, SLICES, y, HEADS, {k: check_scoring(h) for k, h in HEADS.items()},
                     Splits(tests={"t": (F, y)}), [1], random_state=0)


def test_curve_shape_on_gaussians_where_the_answer_is_known():
    """Two isotropic Gaussian classes (GaussianNB's model is the true one).

    Known: the noise layer stays at chance at every size; on the signal layer
    both heads approach the Bayes accuracy Phi(delta sqrt(d)) with many rows,
    their mean curves rise with the size, and the generative head is nearer
    its asymptote first (Ng & Jordan: O(log d) vs O(d) rows) -- at 100 rows
    GaussianNB leads the unregularised logistic regression.
    """
    F_test, y_test = _two_layers(4000, np.random.RandomState(99))
    scorers = {k: check_scoring(h) for k, h in HEADS.items()}
    curves = {}
    for seed in range(10):
        F, y = _two_layers(2000, np.random.RandomState(seed))
        rows = score_curves(F, SLICES, y, HEADS, scorers, Splits(tests={"t": (F_test, y_test)}),
                            [20, 100, 2000], random_state=seed)
        for r in rows:
            curves.setdefault((r["layer"], r["head"]), {}).setdefault(
                r["train_size"], []).append(r["score"])
    sd = np.sqrt(0.25 / 4000)  # binomial sd of an accuracy near 0.5 on the test rows
    bayes = norm.cdf(0.25 * np.sqrt(20))
    for head in HEADS:
        noise = np.concatenate(list(curves[("noise", head)].values()))
        assert np.all(np.abs(noise - 0.5) <= 4 * sd), noise
        means = {size: np.mean(s) for size, s in curves[("signal", head)].items()}
        assert means[20] < means[100] < means[2000]
        assert bayes - 0.02 <= means[2000] <= bayes + 4 * sd
    nb, lr = np.array(curves[("signal", "nb")][100]), np.array(curves[("signal", "lr")][100])
    gap = nb - lr
    assert gap.mean() > 3 * gap.std(ddof=1) / np.sqrt(len(gap))
