"""HistGradientBoosting's parameters on GrowNet (issue 22, item 12).

Those with a meaning for boosted networks work as there (``X_val``/``y_val``/
``sample_weight_val`` in ``fit``, ``max_features``, ``n_trees_per_iteration_``);
the tree parameters get an error that says GrowNet has no trees and which
parameter plays their role, from ``set_params`` (so a grid search stops at once).
"""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_layers import GrowNetClassifier, GrowNetRegressor
from sklearn_layers.heads.boosting._tabular import weighted_mean_std

SMALL = {"max_iter": 8, "n_iter_no_change": 50, "random_state": 0}


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(500, 6, n_informative=4, random_state=0)
    return X[:350], y[:350], X[350:], y[350:]


def test_x_val_is_the_validation_set(data):
    X, y, X_val, y_val = data
    model = GrowNetClassifier(**SMALL).fit(X, y, X_val=X_val, y_val=y_val)
    # Every training row is learned from (no rows held out) ...
    mean, _ = weighted_mean_std(X, np.ones(len(X)))
    np.testing.assert_allclose(model._encoder.mean_, mean, rtol=1e-12)
    # ... and the validation score of the kept stage is the loss on X_val
    # (float32 training: the loss agrees to float32 rounding).
    expected = -log_loss(y_val, model.predict_proba(X_val))
    np.testing.assert_allclose(model.validation_score_[model.n_iter_], expected, rtol=1e-5)
    # HistGradientBoosting takes the same call.
    HistGradientBoostingClassifier(max_iter=5).fit(X, y, X_val=X_val, y_val=y_val)


def test_sample_weight_val_weights_the_validation_score(data):
    X, y, X_val, y_val = data
    w_val = np.where(y_val == 1, 3.0, 1.0)
    plain = GrowNetClassifier(**SMALL).fit(X, y, X_val=X_val, y_val=y_val)
    weighted = GrowNetClassifier(**SMALL).fit(
        X, y, X_val=X_val, y_val=y_val, sample_weight_val=w_val
    )
    np.testing.assert_array_equal(plain.train_score_, weighted.train_score_)
    expected = -log_loss(y_val, weighted.predict_proba(X_val), sample_weight=w_val)
    np.testing.assert_allclose(
        weighted.validation_score_[weighted.n_iter_], expected, rtol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs, params, message",
    [
        ({"X_val": "X"}, {}, "X_val is provided, but y_val"),
        ({"y_val": "y"}, {}, "y_val is provided, but X_val"),
        ({"sample_weight_val": "w"}, {}, "sample_weight_val is provided"),
        ({"X_val": "X", "y_val": "y"}, {"early_stopping": False}, "early_stopping=False"),
    ],
)
def test_validation_data_errors_follow_hist_gradient_boosting(data, kwargs, params, message):
    X, y, X_val, y_val = data
    values = {"X": X_val, "y": y_val, "w": np.ones(len(y_val))}
    with pytest.raises(ValueError, match=message):
        GrowNetClassifier(**{**SMALL, **params}).fit(
            X, y, **{k: values[v] for k, v in kwargs.items()}
        )


def test_x_val_is_ignored_by_auto_on_few_rows_as_in_hist_gradient_boosting(data):
    X, y, X_val, y_val = data
    model = GrowNetClassifier(**{**SMALL, "early_stopping": "auto"})
    model.fit(X, y, X_val=X_val, y_val=y_val)
    hgb = HistGradientBoostingClassifier(max_iter=5, early_stopping="auto")
    hgb.fit(X, y, X_val=X_val, y_val=y_val)
    assert model.do_early_stopping_ is hgb.do_early_stopping_ is False
    assert model.n_iter_ == SMALL["max_iter"]


def test_max_features_draws_whole_features_per_stage():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 6)), columns=[f"x{i}" for i in range(6)])
    X.loc[::5, "x0"] = np.nan  # x0 gets a missingness indicator
    X["colour"] = pd.Categorical(rng.choice(["r", "g", "b"], size=300))
    y = (X["x1"] + (X["colour"] == "r") > 0.5).to_numpy().astype(int)
    model = GrowNetClassifier(max_features=0.5, **SMALL).fit(X, y)
    groups = model._encoder.column_groups()
    assert len(groups) == 7
    n_inputs = sum(len(g) for g in groups)
    seen = []
    for state in model._state["learners"]:
        columns = np.abs(state["hidden.weight"][:, :n_inputs]).sum(axis=0) > 0
        used = [all(columns[g]) for g in groups]
        # A feature is seen or not as a whole: its indicator / one-hot columns with it.
        assert all(all(columns[g]) or not any(columns[g]) for g in groups)
        assert sum(used) == 4  # ceil(0.5 * 7)
        seen.append(tuple(used))
    assert len(set(seen)) > 1  # drawn anew for every stage
    full = GrowNetClassifier(**SMALL).fit(X, y)
    assert not np.array_equal(full.predict_proba(X), model.predict_proba(X))


def test_max_features_warm_start_draws_what_one_fit_draws(data):
    X, y, _, _ = data
    params = {**SMALL, "early_stopping": False, "max_features": 0.5, "corrective_epochs": 0}
    once = GrowNetClassifier(**params).fit(X, y)
    twice = GrowNetClassifier(**{**params, "max_iter": 4, "warm_start": True}).fit(X, y)
    twice.set_params(max_iter=8).fit(X, y)
    for a, b in zip(once._state["learners"], twice._state["learners"]):
        np.testing.assert_array_equal(a["hidden.weight"] == 0, b["hidden.weight"] == 0)


@pytest.mark.parametrize(
    "model, hgb, X, y",
    [
        (GrowNetClassifier, HistGradientBoostingClassifier, *make_classification(200, 4, random_state=0)),
        (
            GrowNetClassifier, HistGradientBoostingClassifier,
            *make_classification(200, 4, n_informative=3, n_redundant=0, n_classes=3, random_state=0),
        ),
        (GrowNetRegressor, HistGradientBoostingRegressor, *make_regression(200, 4, random_state=0)),
    ],
)
def test_n_trees_per_iteration_is_hist_gradient_boostings(model, hgb, X, y):
    fitted = model(max_iter=2, random_state=0).fit(X, y)
    assert fitted.n_trees_per_iteration_ == hgb(max_iter=2).fit(X, y).n_trees_per_iteration_


TREE_PARAMETERS = {
    "max_depth": (3, "hidden_units"),
    "max_leaf_nodes": (15, "hidden_units"),
    "min_samples_leaf": (5, "l2_regularization"),
    "max_bins": (63, "bins"),
    "interaction_cst": ([[0, 1]], "max_features"),
    "monotonic_cst": ([1, 0, 0, 0], "monotonic"),
}


@pytest.mark.parametrize("name", sorted(TREE_PARAMETERS))
@pytest.mark.parametrize("Model", [GrowNetClassifier, GrowNetRegressor])
def test_tree_parameters_say_there_are_no_trees(Model, name):
    value, role = TREE_PARAMETERS[name]
    with pytest.raises(ValueError, match=f"has no trees.*{name}.*{role}"):
        Model().set_params(**{name: value})


def test_a_grid_with_a_tree_parameter_stops_at_once_with_the_reason(data):
    X, y, _, _ = data
    grid = {"model__max_depth": [3, 5], "model__learning_rate": [0.1]}

    def search(model):
        pipe = Pipeline([("scale", FunctionTransformer()), ("model", model)])
        return GridSearchCV(pipe, grid, cv=2).fit(X, y)

    search(HistGradientBoostingClassifier(max_iter=3))  # the grid is HGB's
    with pytest.raises(ValueError, match="GrowNetClassifier has no trees.*hidden_units"):
        search(GrowNetClassifier(max_iter=3))


def test_a_grid_of_the_shared_parameters_runs_unchanged(data):
    X, y, _, _ = data
    grid = {
        "learning_rate": [0.3],
        "max_iter": [3],
        "l2_regularization": [0.0, 1.0],
        "max_features": [0.5, 1.0],
        "early_stopping": [True],
        "validation_fraction": [0.2],
        "n_iter_no_change": [5],
        "tol": [1e-7],
        "scoring": ["loss"],
        "class_weight": [None, "balanced"],
        "categorical_features": ["from_dtype"],
        "warm_start": [False],
        "verbose": [0],
        "random_state": [0],
        "loss": ["log_loss"],
    }
    for Model in (HistGradientBoostingClassifier, GrowNetClassifier):
        search = GridSearchCV(Model(), grid, cv=2, error_score="raise").fit(X, y)
        assert len(search.cv_results_["params"]) == 8
