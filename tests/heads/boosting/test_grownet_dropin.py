"""GrowNet in place of HistGradientBoosting in workflows written for HistGradientBoosting.

Each workflow below is written once, for HistGradientBoosting, and run unchanged
with GrowNet swapped in: statsmodels' ``fair`` survey as a mixed-type DataFrame
(categorical columns, missing answers), a parameter grid in HistGradientBoosting's
parameter names, class weights and sample weights routed through the pipeline.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from sklearn_layers import GrowNetClassifier, GrowNetRegressor

CATEGORICAL = ["occupation", "occupation_husb"]


@pytest.fixture(scope="module")
def fair():
    """1,200 rows of ``fair``: occupations as strings, 10% of two answers missing."""
    data = sm.datasets.fair.load_pandas().data.sample(1200, random_state=0)
    X = data.drop(columns="affairs").reset_index(drop=True)
    for column in CATEGORICAL:
        X[column] = "occ" + X[column].astype(int).astype(str)
    rng = np.random.default_rng(0)
    for column in ("educ", "religious"):
        X.loc[rng.random(len(X)) < 0.1, column] = np.nan
    affairs = data["affairs"].to_numpy()
    had_affair = np.where(affairs > 0, "yes", "no")
    # Survey weights: respondents married longer count double.
    weights = np.where(X["yrs_married"].to_numpy() > 10, 2.0, 1.0)
    return X, had_affair, affairs, weights


def grid_search_workflow(Model, X, y, weights):
    """A ColumnTransformer -> HistGradientBoosting pipeline tuned by GridSearchCV."""
    numeric = [c for c in X.columns if c not in CATEGORICAL]
    encode = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    preprocess = ColumnTransformer(
        [("categories", encode, CATEGORICAL), ("numbers", "passthrough", numeric)],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    model = Model(categorical_features=CATEGORICAL, class_weight="balanced", random_state=0)
    pipe = Pipeline([("preprocess", preprocess), ("model", model)])
    grid = {
        "model__learning_rate": [0.1, 0.3],
        "model__max_iter": [5, 15],
        "model__early_stopping": [True],
        "model__l2_regularization": [0.0],
    }
    search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                          scoring="roc_auc")
    search.fit(X, y, model__sample_weight=weights)
    return search


def dataframe_workflow(Model, X, y, weights, **params):
    """The estimator alone on a DataFrame with pandas ``category`` columns."""
    X = X.astype({c: "category" for c in CATEGORICAL})
    cv = KFold(3, shuffle=True, random_state=0)
    model = Model(categorical_features="from_dtype", random_state=0, **params)
    return cross_validate(model, X, y, cv=cv, params={"sample_weight": weights})


def test_grid_search_pipeline_runs_unchanged(fair):
    X, had_affair, _, weights = fair
    searches = {
        Model: grid_search_workflow(Model, X, had_affair, weights)
        for Model in (HistGradientBoostingClassifier, GrowNetClassifier)
    }
    hgb, grownet = searches.values()
    assert set(grownet.best_params_) == set(hgb.best_params_)
    proba = grownet.predict_proba(X.iloc[:5])
    assert proba.shape == (5, 2) and list(grownet.classes_) == ["no", "yes"]
    # Both rank respondents clearly better than chance; GrowNet within 0.03 AUC.
    assert hgb.best_score_ > 0.65
    assert grownet.best_score_ > hgb.best_score_ - 0.03, (grownet.best_score_, hgb.best_score_)


def test_dataframe_with_categories_and_missing_values_runs_unchanged(fair):
    X, _, affairs, weights = fair
    scores = {
        Model: dataframe_workflow(Model, X, affairs, weights, loss="absolute_error", max_iter=30)
        for Model in (HistGradientBoostingRegressor, GrowNetRegressor)
    }
    hgb, grownet = (s["test_score"] for s in scores.values())
    # Heavy-tailed target, two thirds zeros: R^2 of a median model is poor
    # for both; GrowNet must not be worse than HistGradientBoosting by more
    # than its fold-to-fold spread.
    assert grownet.mean() > hgb.mean() - max(hgb.std(), 0.02), (grownet, hgb)


def test_sample_weight_reaches_the_model_through_the_pipeline(fair):
    X, had_affair, _, weights = fair
    numeric = [c for c in X.columns if c not in CATEGORICAL]
    preprocess = ColumnTransformer(
        [("categories", OrdinalEncoder(), CATEGORICAL), ("numbers", "passthrough", numeric)],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    params = {"categorical_features": CATEGORICAL, "max_iter": 3, "random_state": 0}
    pipe = Pipeline([("preprocess", preprocess), ("model", GrowNetClassifier(**params))])
    weighted = pipe.fit(X, had_affair, model__sample_weight=weights).predict_proba(X)
    direct = GrowNetClassifier(**params).fit(
        preprocess.fit_transform(X), had_affair, sample_weight=weights
    )
    np.testing.assert_array_equal(weighted, direct.predict_proba(preprocess.transform(X)))
    unweighted = pipe.fit(X, had_affair).predict_proba(X)
    assert not np.array_equal(weighted, unweighted)
    assert isinstance(preprocess.transform(X), pd.DataFrame)
