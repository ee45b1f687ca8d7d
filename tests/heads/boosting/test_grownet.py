import inspect
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine, make_regression
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_layers.heads.boosting import GrowNetClassifier, GrowNetRegressor
from sklearn_layers.heads.boosting import _core as _grownet_core

# Small fits: a few stages, no early stopping (the default holds out rows).
FAST = {"max_iter": 3, "early_stopping": False, "random_state": 0}
# Settings for the behaviour tests: still a second or so per fit.
SMALL = {"max_iter": 30, "n_iter_no_change": 5, "random_state": 0}

EXPECTED_FAILED_CHECKS = {
    "check_sample_weight_equivalence_on_dense_data": (
        "mini-batch order depends on the number of rows, so repeating a row is "
        "not the same fit as weighting it by 2; with full-batch steps it is "
        "(test_weight_two_equals_duplicated_rows), and weight 0 always equals "
        "dropping the row (test_zero_weight_equals_dropping_rows)."
    ),
}


@parametrize_with_checks(
    [
        # Classifiers with early stopping: check_class_weight_classifiers sets
        # max_iter=1000 (on 50 rows), which early stopping cuts short.
        GrowNetClassifier(max_iter=3, random_state=0),
        GrowNetClassifier(max_iter=2, scoring="accuracy", validation_fraction=None, random_state=0),
        # check_regressors_train asks R^2 > 0.5 after max_iter stages.
        GrowNetRegressor(**{**FAST, "max_iter": 5, "learning_rate": 1.0}),
        GrowNetRegressor(max_iter=5, learning_rate=1.0, loss="absolute_error", random_state=0),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


# --------------------------------------------------------------- accuracy


@pytest.mark.parametrize("dataset", ["breast_cancer", "wine"])
def test_classifier_near_hist_gradient_boosting(dataset, request):
    X_train, X_test, y_train, y_test = request.getfixturevalue(dataset)
    grownet = GrowNetClassifier(**SMALL).fit(X_train, y_train)
    score = grownet.score(X_test, y_test)
    dummy = DummyClassifier().fit(X_train, y_train).score(X_test, y_test)
    hgb = HistGradientBoostingClassifier(random_state=0)
    reference = hgb.fit(X_train, y_train).score(X_test, y_test)
    assert score > dummy + 0.25
    assert score >= reference - 0.04, (score, reference)


def test_regressor_beats_dummy_in_target_units():
    X, y = make_regression(n_samples=300, n_features=6, noise=5.0, random_state=0)
    y = 1000 * y + 5000  # the target is standardised internally
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    reg = GrowNetRegressor(**SMALL).fit(X_train, y_train)
    dummy = DummyRegressor().fit(X_train, y_train).score(X_test, y_test)
    assert reg.score(X_test, y_test) > 0.9 > dummy + 0.5
    assert abs(reg.predict(X_test).mean() - y_test.mean()) < 0.2 * y_test.std()


# ---------------------------------------------------------------- outputs


def test_binary_outputs(breast_cancer):
    X_train, X_test, y_train, _ = breast_cancer
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    proba = clf.predict_proba(X_test)
    decision = clf.decision_function(X_test)
    assert proba.shape == (len(X_test), 2)
    assert decision.shape == (len(X_test),)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-decision)))
    np.testing.assert_array_equal(clf.predict(X_test), clf.classes_[(decision > 0) * 1])


def test_multiclass_outputs(wine):
    X_train, X_test, y_train, _ = wine
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    proba = clf.predict_proba(X_test)
    decision = clf.decision_function(X_test)
    assert proba.shape == decision.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X_test), decision.argmax(axis=1))
    np.testing.assert_array_equal(proba.argmax(axis=1), decision.argmax(axis=1))


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_staged_predictions_end_at_the_predictions(Estimator, wine):
    X_train, X_test, y_train, _ = wine
    est = Estimator(**FAST).fit(X_train, y_train)
    staged = list(est.staged_predict(X_test))
    assert len(staged) == est.n_iter_ == 3
    np.testing.assert_array_equal(staged[-1], est.predict(X_test))
    if Estimator is GrowNetClassifier:
        np.testing.assert_allclose(
            list(est.staged_predict_proba(X_test))[-1], est.predict_proba(X_test)
        )
        np.testing.assert_allclose(
            list(est.staged_decision_function(X_test))[-1], est.decision_function(X_test)
        )


# ------------------------------------------------------- scores, stopping


@pytest.mark.parametrize("corrective_epochs", [0, 1])
def test_train_score_matches_the_fitted_model(corrective_epochs):
    # validation_fraction=None scores the training rows themselves; the loss
    # recomputed in float64 from the stored state matches the loop's cached,
    # float32 one, in the target's units and weighted.
    X, y = make_regression(n_samples=120, n_features=4, noise=1.0, random_state=0)
    w = np.random.default_rng(0).uniform(0.5, 2, size=len(y))
    reg = GrowNetRegressor(
        max_iter=4, early_stopping=True, validation_fraction=None, n_iter_no_change=10,
        corrective_epochs=corrective_epochs, random_state=0,
    ).fit(X, y, sample_weight=w)
    mean = np.average(y, weights=w)
    losses = [np.average(0.5 * (y - mean) ** 2, weights=w)] + [
        np.average(0.5 * (y - p) ** 2, weights=w) for p in reg.staged_predict(X)
    ]
    # float32 sums over 120 rows of values of order var(y).
    tol = 120 * 6e-8 * 10
    np.testing.assert_allclose(-reg.train_score_[0], losses[0], rtol=1e-6)
    if corrective_epochs == 0:  # learners never change after their stage
        np.testing.assert_allclose(-reg.train_score_, losses, rtol=tol)
    else:  # the corrective step changes the last ones: only the end matches
        np.testing.assert_allclose(-reg.train_score_[-1], losses[-1], rtol=tol)
    np.testing.assert_array_equal(reg.validation_score_, reg.train_score_)


def test_early_stopping_keeps_the_best_stage():
    X, y = make_regression(n_samples=200, n_features=5, noise=50, random_state=0)
    reg = GrowNetRegressor(
        max_iter=60, n_iter_no_change=3, learning_rate=1.0, random_state=0
    ).fit(X, y)
    n_trained = len(reg.validation_score_) - 1
    assert reg.do_early_stopping_ and len(reg.train_score_) == n_trained + 1
    assert n_trained < 60  # it stopped
    best = int(np.argmax(reg.validation_score_))
    assert reg.n_iter_ == best
    assert n_trained - best == 3  # n_iter_no_change stages after the best
    assert len(list(reg.staged_predict(X[:5]))) == reg.n_iter_


def test_no_early_stopping_trains_all_stages_and_records_no_scores(wine):
    X_train, _, y_train, _ = wine
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    assert clf.n_iter_ == 3 and not clf.do_early_stopping_
    assert clf.train_score_.shape == clf.validation_score_.shape == (0,)


def test_early_stopping_auto_follows_hist_gradient_boosting():
    X, y = make_regression(n_samples=10_001, n_features=3, random_state=0)
    params = {"early_stopping": "auto", "max_iter": 1, "epochs_per_stage": 1}
    assert GrowNetRegressor(**params).fit(X, y).do_early_stopping_
    assert not GrowNetRegressor(**params).fit(X[:10_000], y[:10_000]).do_early_stopping_


def test_a_scorer_is_the_validation_score(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    clf = GrowNetClassifier(
        max_iter=4, learning_rate=1.0, corrective_epochs=0, scoring="accuracy",
        validation_fraction=None, n_iter_no_change=10, random_state=0,
    ).fit(X_train, y_train)
    # The training rows are the validation rows; learners never change after
    # their stage, so each entry is the accuracy of one staged prediction.
    staged = [np.mean(p == y_train) for p in clf.staged_predict(X_train)]
    assert clf.n_iter_ == len(staged) > 0
    np.testing.assert_allclose(clf.validation_score_[1 : clf.n_iter_ + 1], staged)
    np.testing.assert_allclose(clf.train_score_, clf.validation_score_)
    assert clf.validation_score_[0] == np.mean(y_train == np.bincount(y_train).argmax())


def test_the_validation_score_is_weighted(breast_cancer):
    X_train, _, y_train, _ = breast_cancer
    seen = []

    def scorer(estimator, X, y, sample_weight=None):
        seen.append((len(X), sample_weight.sum()))
        return 0.0

    w = np.arange(1, len(y_train) + 1, dtype=float)
    GrowNetClassifier(
        max_iter=1, scoring=scorer, validation_fraction=40, random_state=0
    ).fit(X_train, y_train, sample_weight=w)
    train_seen, val_seen = seen[0], seen[1]
    assert val_seen[0] == 40 and train_seen[0] == len(y_train) - 40
    assert train_seen[1] + val_seen[1] == w.sum()  # the rows' own weights


# ----------------------------------------------- weights and class weights


def _fit_predict(estimator, X, y, X_test, **fit_params):
    return estimator.fit(X, y, **fit_params).decision_function(X_test)


def test_class_weight_balanced_equals_its_sample_weight(breast_cancer):
    X_train, X_test, y_train, _ = breast_cancer
    params = {"max_iter": 4, "random_state": 0}
    a = _fit_predict(GrowNetClassifier(class_weight="balanced", **params), X_train, y_train, X_test)
    sw = compute_sample_weight("balanced", y_train)
    b = _fit_predict(GrowNetClassifier(**params), X_train, y_train, X_test, sample_weight=sw)
    np.testing.assert_array_equal(a, b)
    c = _fit_predict(GrowNetClassifier(**params), X_train, y_train, X_test)
    assert not np.array_equal(a, c)


def test_class_weight_dict_multiplies_sample_weight(wine):
    X_train, X_test, y_train, _ = wine
    params = {"max_iter": 3, "random_state": 0}
    sw = np.random.default_rng(0).uniform(0.5, 1.5, size=len(y_train))
    weights = {0: 1.0, 1: 2.0, 2: 0.5}
    a = _fit_predict(
        GrowNetClassifier(class_weight=weights, **params), X_train, y_train, X_test,
        sample_weight=sw,
    )
    combined = sw * np.vectorize(weights.get)(y_train)
    b = _fit_predict(GrowNetClassifier(**params), X_train, y_train, X_test, sample_weight=combined)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_zero_weight_equals_dropping_rows(Estimator, wine):
    X_train, X_test, y_train, _ = wine
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 2.0, size=len(y_train))
    w[::4] = 0.0
    X_junk = X_train.copy()
    X_junk[::4] = rng.normal(size=X_junk[::4].shape) * 1e3  # must not matter
    params = {"max_iter": 4, "random_state": 0, "early_stopping": True}
    a = Estimator(**params).fit(X_junk, y_train, sample_weight=w)
    kept = w > 0
    b = Estimator(**params).fit(X_train[kept], y_train[kept], sample_weight=w[kept])
    np.testing.assert_array_equal(a.predict(X_test), b.predict(X_test))
    np.testing.assert_array_equal(a.validation_score_, b.validation_score_)


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_weight_two_equals_duplicated_rows(Estimator, wine):
    # With full-batch steps the fit sees the same weighted mean loss either
    # way; only the order of float32 sums differs.
    X_train, X_test, y_train, _ = wine
    twice = np.arange(len(y_train)) % 3 == 0
    w = np.where(twice, 2.0, 1.0)
    params = {"max_iter": 3, "early_stopping": False, "batch_size": 1000, "random_state": 0}
    a = Estimator(**params).fit(X_train, y_train, sample_weight=w)
    X_dup = np.vstack([X_train, X_train[twice]])
    y_dup = np.concatenate([y_train, y_train[twice]])
    b = Estimator(**params).fit(X_dup, y_dup)
    if Estimator is GrowNetClassifier:
        pa, pb = a.predict_proba(X_test), b.predict_proba(X_test)
    else:
        pa, pb = a.predict(X_test) / y_train.std(), b.predict(X_test) / y_train.std()
    # Float32 rounding (~1e-7 per sum) grows through 3 stages x 2 epochs of
    # Adam steps; 1e-3 is far below the differences between two seeds.
    np.testing.assert_allclose(pa, pb, atol=1e-3)
    other = Estimator(**{**params, "random_state": 1}).fit(X_train, y_train, sample_weight=w)
    assert np.abs(pa - (other.predict_proba(X_test) if Estimator is GrowNetClassifier else other.predict(X_test) / y_train.std())).max() > 1e-2


def test_sample_weight_errors():
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    est = GrowNetClassifier(**FAST)
    with pytest.raises(ValueError, match="non-negative"):
        est.fit(X, y, sample_weight=-np.ones(20))
    with pytest.raises(ValueError, match="must have shape \\(20,\\)"):
        est.fit(X, y, sample_weight=np.ones(19))
    with pytest.raises(ValueError, match="all zero"):
        est.fit(X, y, sample_weight=np.zeros(20))


# ----------------------------------------- missing values and categories


def test_learns_from_missingness_like_hist_gradient_boosting():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    missing = rng.random(600) < 0.4
    X[missing, 0] = np.nan
    y = missing.astype(int)  # only whether x0 is missing matters
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    hgb = HistGradientBoostingClassifier(random_state=0).fit(X_train, y_train)
    grownet = GrowNetClassifier(max_iter=10, random_state=0).fit(X_train, y_train)
    assert hgb.score(X_test, y_test) == 1.0
    assert grownet.score(X_test, y_test) >= 0.99  # the majority class gets 0.6


def test_nan_at_prediction_only_is_the_mean(wine):
    X_train, X_test, y_train, _ = wine
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    X_nan = X_test.copy()
    X_nan[:, 0] = np.nan
    X_mean = X_test.copy()
    X_mean[:, 0] = X_train[:, 0].mean()
    np.testing.assert_allclose(clf.predict_proba(X_nan), clf.predict_proba(X_mean), rtol=1e-6)


def _categorical_problem(n=600, seed=0):
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue", "grey"], size=n)
    size = rng.normal(size=n)
    # Not ordinal: red and blue are one class, green and grey the other.
    y = np.isin(colour, ["red", "blue"]).astype(int)
    X = pd.DataFrame({"size": size, "colour": pd.Categorical(colour), "noise": rng.normal(size=n)})
    return X, y


@pytest.mark.parametrize("spec", ["from_dtype", [1], [False, True, False], ["colour"]])
def test_categorical_features_specs_agree(spec):
    X, y = _categorical_problem()
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    if spec != "from_dtype":  # the column as plain strings: marked by spec only
        X_train = X_train.astype({"colour": str})
        X_test = X_test.astype({"colour": str})
    clf = GrowNetClassifier(max_iter=10, categorical_features=spec, random_state=0)
    clf.fit(X_train, y_train)
    np.testing.assert_array_equal(clf.is_categorical_, [False, True, False])
    as_category = {"colour": "category"}
    reference = GrowNetClassifier(max_iter=10, random_state=0)
    reference.fit(X_train.astype(as_category), y_train)
    np.testing.assert_array_equal(
        clf.predict_proba(X_test), reference.predict_proba(X_test.astype(as_category))
    )
    assert clf.score(X_test, y_test) > 0.95


def test_unknown_category_at_prediction_is_accepted():
    X, y = _categorical_problem()
    clf = GrowNetClassifier(**FAST).fit(X, y)
    new = X.iloc[:3].copy()
    new["colour"] = pd.Categorical(["purple", "red", None])
    assert clf.predict_proba(new).shape == (3, 2)


def test_string_column_not_marked_categorical_is_named():
    X, y = _categorical_problem()
    with pytest.raises(ValueError, match=r"columns \['colour'\] as numbers"):
        GrowNetClassifier(**FAST).fit(X.astype({"colour": str}), y)


def test_nothing_is_learned_from_the_validation_rows():
    # Split first, learn statistics after: changing the validation rows'
    # features changes the validation scores and nothing else.
    X, y = _categorical_problem(n=400)
    X.loc[X.index[::7], "size"] = np.nan
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    params = {"max_iter": 4, "random_state": 0, "validation_fraction": 0.25}
    a = GrowNetClassifier(**params).fit(X, y, sample_weight=w)
    val = a._split(a._table(X, y, w, reset=False))[1].positions
    X_changed = X.copy()
    X_changed.loc[X.index[val], "size"] = 1e6
    X_changed["colour"] = X_changed["colour"].cat.add_categories(["violet"])
    X_changed.loc[X.index[val], "colour"] = "violet"
    b = GrowNetClassifier(**params).fit(X_changed, y, sample_weight=w)
    np.testing.assert_array_equal(a._encoder.mean_, b._encoder.mean_)
    np.testing.assert_array_equal(a._encoder.scale_, b._encoder.scale_)
    assert [list(c) for c in a._encoder.onehot_.categories_] == [
        list(c) for c in b._encoder.onehot_.categories_
    ]
    np.testing.assert_array_equal(a.train_score_, b.train_score_)
    assert not np.array_equal(a.validation_score_, b.validation_score_)


# ------------------------------------------------------------------ losses


@pytest.mark.parametrize(
    "loss, quantile, level",
    [("quantile", 0.9, 0.9), ("quantile", 0.2, 0.2), ("absolute_error", None, 0.5)],
)
def test_quantile_losses_cover_their_level_like_hist_gradient_boosting(loss, quantile, level):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(3000, 2))
    y = X[:, 0] + (0.5 + np.abs(X[:, 1])) * rng.standard_t(3, size=3000)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=2000, random_state=0)
    reg = GrowNetRegressor(loss=loss, quantile=quantile, max_iter=20, random_state=0)
    hgb = HistGradientBoostingRegressor(loss=loss, quantile=quantile, random_state=0)
    coverage = np.mean(y_test <= reg.fit(X_train, y_train).predict(X_test))
    reference = np.mean(y_test <= hgb.fit(X_train, y_train).predict(X_test))
    # Binomial standard deviation on 2,000 rows is at most 0.011; the fitted
    # quantile adds its own error, HistGradientBoosting's here up to 0.065:
    # GrowNet's coverage error is at most HistGradientBoosting's plus two sds.
    error, reference_error = abs(coverage - level), abs(reference - level)
    assert error < max(0.05, reference_error + 0.02), (coverage, reference)
    assert abs(reference - level) < 0.07


def test_poisson_predicts_positive_counts_like_hist_gradient_boosting():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 3))
    y = rng.poisson(np.exp(0.5 + 0.8 * X[:, 0] - 0.5 * X[:, 1] ** 2))
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=500, random_state=0)
    from sklearn.metrics import mean_poisson_deviance

    reg = GrowNetRegressor(loss="poisson", max_iter=20, random_state=0).fit(X_train, y_train)
    hgb = HistGradientBoostingRegressor(loss="poisson", random_state=0).fit(X_train, y_train)
    prediction = reg.predict(X_test)
    assert (prediction > 0).all()
    deviance = mean_poisson_deviance(y_test, prediction)
    constant = mean_poisson_deviance(y_test, np.full(len(y_test), y_train.mean()))
    reference = mean_poisson_deviance(y_test, hgb.predict(X_test))
    assert deviance < 0.6 * constant and deviance < 1.1 * reference, (deviance, reference)


@pytest.mark.parametrize(
    "loss, constant",
    [
        ("squared_error", lambda y: 0.5 * np.var(y)),
        ("absolute_error", lambda y: np.mean(np.abs(y - np.median(y)))),
        ("poisson", lambda y: np.mean(y) - np.mean(y * np.log(np.mean(y)))),
    ],
)
def test_the_first_score_is_the_constant_models_loss(loss, constant):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(101, 2)), rng.poisson(4.0, size=101).astype(float)
    reg = GrowNetRegressor(
        loss=loss, max_iter=1, early_stopping=True, validation_fraction=None, random_state=0
    ).fit(X, y)
    np.testing.assert_allclose(-reg.train_score_[0], constant(y), rtol=1e-6)


def test_loss_parameter_errors():
    X, y = np.random.default_rng(0).normal(size=(20, 2)), np.arange(20.0) - 5
    with pytest.raises(ValueError, match="quantile="):
        GrowNetRegressor(loss="quantile", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="non-negative"):
        GrowNetRegressor(loss="poisson", **FAST).fit(X, y)


# --------------------------------------------------------- warm start


def test_warm_start_adds_stages(wine):
    X_train, X_test, y_train, _ = wine
    params = {"max_iter": 3, "corrective_epochs": 0, "warm_start": True, "random_state": 0}
    clf = GrowNetClassifier(**params).fit(X_train, y_train)
    before = list(clf.staged_decision_function(X_test))
    clf.set_params(max_iter=5).fit(X_train, y_train)
    after = list(clf.staged_decision_function(X_test))
    assert clf.n_iter_ == 5
    for a, b in zip(before, after[:3]):  # the first stages are kept as they were
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="max_iter=4 must be larger than or equal to n_iter_=5"):
        clf.set_params(max_iter=4).fit(X_train, y_train)
    fresh = GrowNetClassifier(**{**params, "warm_start": False, "max_iter": 5}).fit(X_train, y_train)
    assert fresh.n_iter_ == 5


def test_warm_start_continues_early_stopping_history():
    X, y = make_regression(n_samples=200, n_features=4, noise=10, random_state=0)
    reg = GrowNetRegressor(max_iter=3, warm_start=True, n_iter_no_change=50, random_state=0)
    reg.fit(X, y)
    first = reg.validation_score_.copy()
    reg.set_params(max_iter=6).fit(X, y)
    # Stages 0-6 scored, the first three as before; the best one is kept.
    assert len(reg.validation_score_) == 7
    np.testing.assert_allclose(reg.validation_score_[:3], first[:3])
    assert reg.n_iter_ == int(np.argmax(reg.validation_score_))


# ------------------------------------------------- cost grows linearly


def _learner_passes(monkeypatch, **params):
    calls = []
    forward = _grownet_core.WeakLearner.forward

    def counted(self, x, previous):
        calls.append(1)
        return forward(self, x, previous)

    monkeypatch.setattr(_grownet_core.WeakLearner, "forward", counted)
    X, y = make_regression(n_samples=64, n_features=3, random_state=0)
    GrowNetRegressor(early_stopping=False, batch_size=64, random_state=0, **params).fit(X, y)
    monkeypatch.undo()
    return len(calls)


def test_fit_cost_is_linear_in_max_iter_with_a_corrective_window(monkeypatch):
    # Count learner passes (forward calls), the unit of a fit's cost: each
    # stage costs the same once the window is full, so the second difference
    # over max_iter is zero; the fully corrective step grows with the stage.
    windowed = [_learner_passes(monkeypatch, max_iter=m, corrective_window=2) for m in (4, 8, 12)]
    assert windowed[2] - windowed[1] == windowed[1] - windowed[0] > 0
    full = [_learner_passes(monkeypatch, max_iter=m, corrective_window=None) for m in (4, 8, 12)]
    assert full[2] - full[1] > full[1] - full[0]


# -------------------------------------------------- reproducibility, state


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_random_state_makes_fits_identical(Estimator, wine):
    X_train, X_test, y_train, _ = wine
    params = {**FAST, "early_stopping": True, "random_state": 42}
    a = Estimator(**params).fit(X_train, y_train)
    b = Estimator(**params).fit(X_train, y_train)
    c = Estimator(**{**params, "random_state": 7}).fit(X_train, y_train)
    np.testing.assert_array_equal(a._raw_predict(X_test), b._raw_predict(X_test))
    np.testing.assert_array_equal(a.validation_score_, b.validation_score_)
    assert not np.array_equal(a._raw_predict(X_test), c._raw_predict(X_test))


def test_n_threads_sets_torch_threads_for_the_call_only(wine):
    X_train, X_test, y_train, _ = wine
    previous = torch.get_num_threads()
    results = []
    try:
        for ambient in (1, 2):
            torch.set_num_threads(ambient)
            clf = GrowNetClassifier(**FAST, n_threads=1).fit(X_train, y_train)
            results.append(clf.decision_function(X_test))
            assert torch.get_num_threads() == ambient
            GrowNetClassifier(**FAST).fit(X_train, y_train)  # None: left alone
            assert torch.get_num_threads() == ambient
    finally:
        torch.set_num_threads(previous)
    np.testing.assert_array_equal(*results)


def test_global_random_state_and_threads_untouched(wine):
    X_train, X_test, y_train, _ = wine
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()
    threads = torch.get_num_threads()
    clf = GrowNetClassifier(**{**FAST, "n_threads": threads + 1}).fit(X_train, y_train)
    clf.predict(X_test)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_pickle_round_trip(Estimator, wine):
    X_train, X_test, y_train, _ = wine
    est = Estimator(**FAST).fit(X_train, y_train)
    loaded = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(loaded.predict(X_test), est.predict(X_test))
    # Fitted state is numpy only: nothing torch-specific is pickled.
    learner = est._state["learners"][0]
    assert all(isinstance(v, np.ndarray) for v in learner.values())


def test_unusable_device_is_a_value_error(wine):
    X_train, _, y_train, _ = wine
    with pytest.raises(ValueError, match="Unknown device"):
        GrowNetClassifier(**FAST, device="nonsense").fit(X_train, y_train)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            GrowNetClassifier(**FAST, device="cuda").fit(X_train, y_train)


def test_verbose_prints_one_line_per_stage(wine, capsys):
    X_train, _, y_train, _ = wine
    GrowNetClassifier(max_iter=3, n_iter_no_change=10, verbose=1, random_state=0).fit(
        X_train, y_train
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("validation score" in line for line in lines)
    GrowNetClassifier(**FAST).fit(X_train, y_train)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------- bad input


def test_one_class_is_refused():
    X = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ValueError, match="only one class"):
        GrowNetClassifier(**FAST).fit(X, np.zeros(10))


def test_too_few_rows_for_early_stopping_say_what_to_do():
    X = np.arange(4.0).reshape(2, 2)
    with pytest.raises(ValueError, match="early_stopping=False"):
        GrowNetRegressor(max_iter=2, validation_fraction=0.5).fit(X[:1], [1.0])


def test_clone_and_params_round_trip():
    est = GrowNetClassifier(max_iter=7, hidden_units=8, batch_size=64)
    assert clone(est).get_params() == est.get_params()
    assert est.get_params()["batch_size"] == 64


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_samples=st.integers(8, 40),
    n_features=st.integers(1, 5),
    n_classes=st.integers(2, 4),
    dtype=st.sampled_from([np.float32, np.float64, np.int64]),
    seed=st.integers(0, 2**16),
)
def test_property_shapes_and_dtypes(n_samples, n_features, n_classes, dtype, seed):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n_samples, n_features)) * 10).astype(dtype)
    y = np.arange(n_samples) % n_classes  # every class present
    params = {"max_iter": 2, "early_stopping": False, "random_state": seed}
    clf = GrowNetClassifier(**params).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (n_samples, n_classes) and proba.dtype == np.float64
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert clf.predict(X).shape == (n_samples,)
    reg = GrowNetRegressor(**params).fit(X, rng.normal(size=n_samples))
    prediction = reg.predict(X)
    assert prediction.shape == (n_samples,) and prediction.dtype == np.float64
    assert np.all(np.isfinite(prediction))


@settings(max_examples=15, deadline=None)
@given(
    bad=st.sampled_from(["inf", "wrong_width", "one_d", "empty", "string"]),
    estimator=st.sampled_from([GrowNetClassifier, GrowNetRegressor]),
)
def test_property_bad_input_gets_value_error(bad, estimator):
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    est = estimator(**FAST).fit(X, y)
    if bad == "inf":
        X_bad = X.copy()
        X_bad[0, 0] = np.inf
    elif bad == "wrong_width":
        X_bad = X[:, :2]
    elif bad == "one_d":
        X_bad = X[:, 0]
    elif bad == "empty":
        X_bad = X[:0]
    else:
        X_bad = X.astype(str).astype(object)
        X_bad[0, 0] = "abc"
    with pytest.raises(ValueError):
        est.predict(X_bad)


# ------------------------------------------------ the user guide's table


def _documented_defaults():
    """``{parameter: [default, ...]}`` from the table in docs/user_guide/grownet.rst.

    A row names one or more parameters (``a``; ``b``) and their defaults in
    the same order; one parameter with two defaults gives the classifier's
    and the regressor's.
    """
    text = (Path(__file__).parents[3] / "docs" / "user_guide" / "grownet.rst").read_text()
    table = text.split(".. list-table::")[1].split("\n\n\n")[0]
    rows = re.findall(r"\* - (.+?)\n\s+- (.+?)\n", table)
    documented = {}
    for names, defaults in rows[1:]:  # row 0 is the header
        names = re.findall(r"``(\w+)``", names)
        values = [v.strip() for v in defaults.split(";")]
        if len(names) == 1:
            documented[names[0]] = values
        else:
            assert len(names) == len(values), (names, values)
            documented.update((name, [value]) for name, value in zip(names, values))
    return documented


def _as_written(value):
    return f"``{value!r}``".replace("'", '"')


def test_user_guide_states_the_signature_defaults():
    documented = _documented_defaults()
    classes = (GrowNetClassifier, GrowNetRegressor)
    signatures = [inspect.signature(cls).parameters for cls in classes]
    every = set(signatures[0]) | set(signatures[1])
    assert set(documented) == every, set(documented) ^ every
    for name, texts in documented.items():
        defaults = [_as_written(p[name].default) for p in signatures if name in p]
        if len(texts) == 1:
            assert set(defaults) == set(texts), (name, texts, defaults)
        else:  # the classifier's, then the regressor's
            assert texts == defaults, (name, texts, defaults)
