import pickle

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_wine, make_regression
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils.estimator_checks import parametrize_with_checks

from _float32 import gamma
from sklearn_layers.heads._grownet import GrowNetClassifier, GrowNetRegressor

FAST = {
    "n_estimators": 3,
    "epochs_per_stage": 3,
    "corrective_epochs": 1,
    "early_stopping": False,
    "random_state": 0,
}

# Settings for the behaviour tests: still a few seconds at most per fit.
SMALL = {"n_estimators": 8, "n_iter_no_change": 4, "random_state": 0}


# The defaults hold out a validation set (early stopping): check those too.
TINY_DEFAULTS = {"n_estimators": 2, "epochs_per_stage": 1, "random_state": 0}


@parametrize_with_checks(
    [
        GrowNetClassifier(**FAST),
        GrowNetRegressor(**FAST),
        GrowNetClassifier(**TINY_DEFAULTS),
        GrowNetRegressor(**TINY_DEFAULTS),
    ],
    expected_failed_checks=lambda est: {},
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


@pytest.mark.parametrize("dataset", ["breast_cancer", "wine"])
def test_classifier_near_hist_gradient_boosting(dataset, request):
    X_train, X_test, y_train, y_test = request.getfixturevalue(dataset)
    grownet = GrowNetClassifier(**SMALL).fit(X_train, y_train)
    score = grownet.score(X_test, y_test)
    dummy = DummyClassifier().fit(X_train, y_train).score(X_test, y_test)
    hgb = HistGradientBoostingClassifier(max_iter=50, random_state=0)
    reference = hgb.fit(X_train, y_train).score(X_test, y_test)
    assert score > dummy + 0.25
    assert score >= reference - 0.04, (score, reference)


def test_binary_outputs(breast_cancer):
    X_train, X_test, y_train, _ = breast_cancer
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    proba = clf.predict_proba(X_test)
    decision = clf.decision_function(X_test)
    assert proba.shape == (len(X_test), 2)
    assert decision.shape == (len(X_test),)
    # [1 - p, p] in float64: one subtraction, one sum
    np.testing.assert_allclose(
        proba.sum(axis=1), 1.0, rtol=0, atol=gamma(2, np.float64)
    )
    # a sigmoid two ways (exp within 1 ulp, an addition, a division): 4 ulps each
    np.testing.assert_allclose(
        proba[:, 1], 1 / (1 + np.exp(-decision)), rtol=gamma(8, np.float64)
    )
    np.testing.assert_array_equal(clf.predict(X_test), clf.classes_[(decision > 0) * 1])


def test_multiclass_outputs(wine):
    X_train, X_test, y_train, _ = wine
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    proba = clf.predict_proba(X_test)
    decision = clf.decision_function(X_test)
    assert proba.shape == decision.shape == (len(X_test), 3)
    # e_i / sum(e) in float64: the sum within gamma(k), the divisions, their sum
    np.testing.assert_allclose(
        proba.sum(axis=1), 1.0, rtol=0, atol=gamma(8, np.float64)
    )
    np.testing.assert_array_equal(clf.predict(X_test), decision.argmax(axis=1))
    np.testing.assert_array_equal(proba.argmax(axis=1), decision.argmax(axis=1))


def test_regressor_beats_dummy_in_target_units():
    X, y = make_regression(n_samples=300, n_features=6, noise=5.0, random_state=0)
    y = 1000 * y + 5000  # the target is standardised internally
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    reg = GrowNetRegressor(**SMALL).fit(X_train, y_train)
    dummy = DummyRegressor().fit(X_train, y_train).score(X_test, y_test)
    assert reg.score(X_test, y_test) > 0.9 > dummy + 0.5
    assert abs(reg.predict(X_test).mean() - y_test.mean()) < 0.2 * y_test.std()


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_staged_predict_ends_at_predict(Estimator, wine):
    X_train, X_test, y_train, _ = wine
    est = Estimator(**FAST).fit(X_train, y_train)
    staged = list(est.staged_predict(X_test))
    assert len(staged) == est.n_estimators_ == 3
    np.testing.assert_array_equal(staged[-1], est.predict(X_test))
    if Estimator is GrowNetClassifier:
        staged_proba = list(est.staged_predict_proba(X_test))
        assert len(staged_proba) == 3
        # the last stage's running sum is the ensemble predict_proba computes
        np.testing.assert_array_equal(staged_proba[-1], est.predict_proba(X_test))


@pytest.mark.parametrize("corrective_epochs", [0, 1])
def test_train_score_matches_fitted_model(corrective_epochs):
    # The loss F = c0 + alpha * sum f_t recomputed from the stored state (in
    # float64) matches what the training loop recorded (cached, incremental).
    X, y = make_regression(n_samples=120, n_features=4, noise=1.0, random_state=0)
    reg = GrowNetRegressor(
        **{**FAST, "n_estimators": 4, "corrective_epochs": corrective_epochs}
    ).fit(X, y)
    y_std = (y - y.mean()) / y.std()
    scores = [
        -0.5 * np.mean(((pred - y.mean()) / y.std() - y_std) ** 2)
        for pred in reg.staged_predict(X)
    ]
    # Training computes F in float32: each of a stage's three linear layers
    # (fan-in <= 4 + 32) adds at most 6 sqrt(36) u relative to F's size with
    # overwhelming probability (Higham & Mary 2019, lambda = 6); the loss
    # L = mean(r^2) / 2 then moves by <= max|dF| sqrt(2 L) + max|dF|^2 / 2,
    # and its float32 sum over n rows by gamma(n + 4) L.
    n, stages = len(X), np.arange(1, len(scores) + 1)
    size = 1 + np.abs(y_std).max()
    dF = stages * 3 * 6 * np.sqrt(36) * gamma(1) * size
    losses = -np.asarray(scores)
    atol = dF * np.sqrt(2 * losses) + dF**2 / 2 + gamma(n + 4) * losses
    if corrective_epochs == 0:  # learners never change after their stage
        assert (np.abs(np.asarray(scores) - reg.train_score_[1:]) <= atol).all()
    else:  # the corrective step changes them: only the last stage matches
        assert abs(scores[-1] - reg.train_score_[-1]) <= atol[-1]
    # the constant model on the standardised target: mean(y_std^2) / 2 = 1/2,
    # with a mean, a standard deviation and a mean of squares in float32
    np.testing.assert_allclose(reg.train_score_[0], -0.5, rtol=gamma(3 * n + 10))


def test_early_stopping_keeps_best_stage():
    # Noisy and small: the validation loss stops improving early.
    X, y = make_regression(n_samples=200, n_features=5, noise=50, random_state=0)
    reg = GrowNetRegressor(
        n_estimators=30, n_iter_no_change=2, early_stopping=True, random_state=0
    ).fit(X, y)
    n_trained = len(reg.validation_score_) - 1
    assert len(reg.train_score_) == n_trained + 1
    assert n_trained < 30  # it stopped
    assert 1 <= reg.n_estimators_ <= n_trained
    best = 1 + np.argmax(reg.validation_score_[1:])
    assert reg.n_estimators_ == best
    assert n_trained - best == 2  # stopped n_iter_no_change stages after the best
    assert len(list(reg.staged_predict(X[:5]))) == reg.n_estimators_


def test_no_early_stopping_trains_all_stages(wine):
    X_train, _, y_train, _ = wine
    clf = GrowNetClassifier(**FAST).fit(X_train, y_train)
    assert clf.n_estimators_ == 3
    assert clf.train_score_.shape == (4,)
    assert clf.validation_score_.shape == (0,)
    assert clf.train_score_[-1] > clf.train_score_[0]  # better than the constant


def test_early_stopping_auto_follows_hist_gradient_boosting(wine):
    X_train, _, y_train, _ = wine
    clf = GrowNetClassifier(**{**FAST, "early_stopping": "auto"}).fit(X_train, y_train)
    assert clf.validation_score_.shape == (0,)  # n_samples <= 10_000


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


def test_fit_does_not_depend_on_ambient_thread_count(wine):
    X_train, X_test, y_train, _ = wine
    previous = torch.get_num_threads()
    results = []
    try:
        for ambient in (1, 2):
            torch.set_num_threads(ambient)
            clf = GrowNetClassifier(**FAST).fit(X_train, y_train)  # n_threads=1
            results.append(clf.decision_function(X_test))
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


def test_pandas_and_string_labels_in_column_transformer(wine):
    pd = pytest.importorskip("pandas")
    X_train, X_test, y_train, _ = wine
    names = np.array(["low", "mid", "high"])

    def frame(X):
        df = pd.DataFrame(X[:, :5], columns=[f"f{i}" for i in range(5)])
        df["colour"] = np.where(X[:, 5] > np.median(X_train[:, 5]), "red", "white")
        return df

    pipe = make_pipeline(
        ColumnTransformer(
            [("onehot", OneHotEncoder(), ["colour"])], remainder="passthrough"
        ),
        GrowNetClassifier(**FAST),
    )
    pipe.fit(frame(X_train), names[y_train])
    predicted = pipe.predict(frame(X_test))
    assert predicted.dtype.kind in "OU" and set(predicted) <= set(names)
    assert pipe.predict_proba(frame(X_test)).shape == (len(X_test), 3)

    df = frame(X_train).drop(columns="colour")
    clf = GrowNetClassifier(**FAST).fit(df, names[y_train])
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    np.testing.assert_array_equal(clf.classes_, np.sort(names))


@pytest.mark.parametrize("Estimator", [GrowNetClassifier, GrowNetRegressor])
def test_nan_gets_a_clear_error(Estimator, wine):
    X_train, X_test, y_train, _ = wine
    X_nan = X_train.copy()
    X_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Estimator(**FAST).fit(X_nan, y_train)
    est = Estimator(**FAST).fit(X_train, y_train)
    X_nan = X_test.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.predict(X_nan)


def test_one_class_and_tiny_inputs_are_refused():
    X = np.arange(20.0).reshape(10, 2)
    with pytest.raises(ValueError, match="only one class"):
        GrowNetClassifier(**FAST).fit(X, np.zeros(10))
    with pytest.raises(ValueError, match="n_samples = 1"):
        GrowNetRegressor(**FAST).fit(X[:1], [1.0])
    with pytest.raises(ValueError, match="early_stopping=False"):
        GrowNetRegressor(**{**FAST, "early_stopping": True}).fit(X[:2], [1.0, 2.0])


def test_clone_and_params_round_trip():
    est = GrowNetClassifier(n_estimators=7, hidden_units=8, batch_size=64)
    assert clone(est).get_params() == est.get_params()
    assert est.get_params()["batch_size"] == 64


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
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
    params = {
        "n_estimators": 2,
        "epochs_per_stage": 1,
        "corrective_epochs": 1,
        "early_stopping": False,
        "random_state": seed,
    }
    clf = GrowNetClassifier(**params).fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (n_samples, n_classes) and proba.dtype == np.float64
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(
        proba.sum(axis=1), 1.0, rtol=0, atol=gamma(2 * n_classes + 2, np.float64)
    )
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
