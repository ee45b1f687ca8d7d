"""GrowNet at the edges of the data (issue 22, item 6), against HistGradientBoosting.

A class whose rows all have weight 0 stays a class; features scaled by 1e-200
(or 1e200) and a target scaled by 1e160 give the model the unscaled data give.
"""

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split

from sklearn_layers import GrowNetClassifier, GrowNetRegressor

SMALL = {"max_iter": 30, "n_iter_no_change": 5, "random_state": 0}


@pytest.mark.parametrize("n_classes", [2, 3])
def test_a_class_of_zero_weight_stays_in_classes(n_classes):
    X, y = make_classification(
        300, 5, n_informative=3, n_classes=n_classes + 1, random_state=0
    )
    w = np.where(y == n_classes, 0.0, 1.0)
    grownet = GrowNetClassifier(**SMALL).fit(X, y, sample_weight=w)
    hgb = HistGradientBoostingClassifier(max_iter=10).fit(X, y, sample_weight=w)
    logistic = LogisticRegression().fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(grownet.classes_, hgb.classes_)
    np.testing.assert_array_equal(grownet.classes_, logistic.classes_)
    proba = grownet.predict_proba(X)
    assert proba.shape == (len(X), n_classes + 1)
    assert proba[:, n_classes].max() < 0.01  # never seen with any weight
    assert grownet.n_trees_per_iteration_ == hgb.n_trees_per_iteration_


def _classification():
    X, y = make_classification(600, 6, n_informative=4, random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0)


@pytest.mark.parametrize("factor", [1e-200, 1e200])
def test_scaled_features_give_the_unscaled_model(factor):
    X_train, X_test, y_train, y_test = _classification()
    plain = GrowNetClassifier(**SMALL).fit(X_train, y_train)
    scaled = GrowNetClassifier(**SMALL).fit(X_train * factor, y_train)
    # Standardisation is scale-invariant: the encoded inputs agree to float64
    # rounding, so the float32 networks train on the same numbers.
    np.testing.assert_allclose(
        scaled._encoder.transform(X_test * factor, None),
        plain._encoder.transform(X_test, None),
        rtol=0, atol=1e-6,
    )
    np.testing.assert_array_equal(scaled.predict(X_test * factor), plain.predict(X_test))
    hgb = HistGradientBoostingClassifier(random_state=0).fit(X_train * factor, y_train)
    hgb_accuracy = hgb.score(X_test * factor, y_test)
    assert hgb_accuracy > 0.85  # trees do not care about the scale
    assert scaled.score(X_test * factor, y_test) > hgb_accuracy - 0.05


def test_huge_target_gives_finite_predictions_in_its_units():
    X, y = make_regression(400, 5, noise=5, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    factor = 1e160
    plain = GrowNetRegressor(**SMALL).fit(X_train, y_train)
    scaled = GrowNetRegressor(**SMALL).fit(X_train, y_train * factor)
    prediction = scaled.predict(X_test)
    assert np.isfinite(prediction).all()
    assert scaled.n_iter_ == plain.n_iter_ > 0  # early stopping saw the same scores
    np.testing.assert_allclose(prediction / factor, plain.predict(X_test), rtol=1e-9, atol=1e-9)
    hgb = HistGradientBoostingRegressor(random_state=0).fit(X_train, y_train * factor)
    hgb_r2 = r2_score(y_test, hgb.predict(X_test) / factor)
    assert r2_score(y_test, prediction / factor) > hgb_r2 - 0.05


def test_tiny_target_is_not_read_as_constant():
    X, y = make_regression(300, 4, noise=1, random_state=0)
    model = GrowNetRegressor(**SMALL).fit(X, y * 1e-200)
    assert model._y_scale < 1e-190  # not the constant-target fallback of 1
    assert r2_score(y, model.predict(X) / 1e-200) > 0.8
