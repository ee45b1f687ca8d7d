"""LinearProbeRegressor against make_pipeline(StandardScaler(), RidgeCV(alphas))."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, make_regression
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import sklearn_layers
from sklearn_layers.heads import LinearProbeRegressor, default_probe

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0)


def _expected_failures(estimator):
    if len(estimator.alphas) == 1:
        return {}
    return {
        "check_sample_weight_equivalence_on_dense_data": (
            "Leave-one-out is not invariant to repeating rows: a repeated row "
            "left out keeps its copy in the fit, so the chosen alpha can differ "
            "(RidgeCV's expected failure too); with one alpha the fit is "
            "exactly the weighted one (the second instance passes the check)."
        )
    }


@parametrize_with_checks(
    [LinearProbeRegressor(), LinearProbeRegressor(alphas=(0.5,), standardize=False),
     LinearProbeRegressor(alphas=(2.0,))],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _reference(X, y, alphas, sample_weight=None, standardize=True):
    steps = [StandardScaler(with_std=standardize), RidgeCV(alphas=alphas)]
    return make_pipeline(*steps).fit(
        X, y, standardscaler__sample_weight=sample_weight,
        ridgecv__sample_weight=sample_weight,
    )


def _problems():
    X, y = load_diabetes(return_X_y=True)
    Xw, yw = make_regression(60, 150, n_informative=20, noise=5.0, random_state=0)
    scaled = X * np.logspace(-3, 3, X.shape[1]) + 7.0  # scales far from 1
    return {
        "tall": (X, y),
        "wide": (Xw, yw),
        "scaled": (scaled, y),
        "two targets": (X, np.column_stack([y, np.sqrt(y)])),
    }


@pytest.mark.parametrize("name", list(_problems()))
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("standardize", [True, False])
def test_same_alpha_and_predictions_as_ridge_cv(name, weighted, standardize):
    X, y = _problems()[name]
    weights = (np.random.default_rng(0).uniform(0.0, 2.0, len(X))
               if weighted else None)
    ours = LinearProbeRegressor(alphas=ALPHAS, standardize=standardize).fit(
        X, y, sample_weight=weights
    )
    ref = _reference(X, y, ALPHAS, weights, standardize)
    assert ours.alpha_ == ref[-1].alpha_
    # both are exact (one eigendecomposition each): float64 rounding of
    # products over n_features terms, relative to the scale of y
    tol = 1e-9 * np.abs(y).max()
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=0, atol=tol)
    np.testing.assert_allclose(ours.best_score_, ref[-1].best_score_, rtol=1e-9)


def test_leave_one_out_error_is_the_refit_without_the_row():
    X, y = load_diabetes(return_X_y=True)
    X, y = X[:40], y[:40]
    alpha = 3.0
    reg = LinearProbeRegressor(alphas=(alpha,)).fit(X, y)
    # by hand: refit on 39 rows with the standardisation of all 40 (as RidgeCV)
    Z = (X - reg.mean_) / reg.scale_
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        Zk, yk = Z[keep], y[keep]
        Zc, yc = Zk - Zk.mean(0), yk - yk.mean()
        w = np.linalg.solve(Zc.T @ Zc + alpha * np.eye(X.shape[1]), Zc.T @ yc)
        errors.append(y[i] - (yk.mean() + (Z[i] - Zk.mean(0)) @ w))
    np.testing.assert_allclose(reg.best_score_, -np.mean(np.square(errors)), rtol=1e-9)


def test_float32_input_is_solved_in_float64():
    X, y = load_diabetes(return_X_y=True)
    X32 = X.astype(np.float32)
    X64 = X32.astype(np.float64)  # the same values, exactly
    ours = LinearProbeRegressor(alphas=ALPHAS).fit(X32, y)
    ref = _reference(X64, y, ALPHAS)
    assert ours.alpha_ == ref[-1].alpha_
    np.testing.assert_allclose(ours.predict(X64), ref.predict(X64), rtol=0,
                               atol=1e-9 * np.abs(y).max())


@pytest.mark.parametrize("alphas", [(), (1.0, -1.0), (0.0,), (np.inf,)])
def test_bad_alphas_are_a_value_error(alphas):
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(ValueError, match="alphas"):
        LinearProbeRegressor(alphas=alphas).fit(X, y)


def test_default_probe_gives_the_regressor_for_regression():
    assert isinstance(default_probe("regression"), LinearProbeRegressor)
    assert isinstance(sklearn_layers.default_probe(task="regression"),
                      LinearProbeRegressor)
    assert sklearn_layers.LinearProbeRegressor is LinearProbeRegressor
    with pytest.raises(ValueError, match="task must be one of"):
        default_probe("ranking")
