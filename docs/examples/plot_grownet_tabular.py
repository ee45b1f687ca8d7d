"""
GrowNet in place of gradient-boosted trees
==========================================

:class:`~sklearn_layers.GrowNetClassifier` is gradient boosting whose weak
learners are shallow neural networks. It takes the place of
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` in a tabular
pipeline: pandas in, string labels, ``random_state`` for identical fits.

The data is scikit-learn's breast cancer table as a pandas DataFrame, with one
string column added (a coarse size category derived from ``mean radius``) so
that the pipeline needs a :class:`~sklearn.compose.ColumnTransformer`.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from sklearn_layers import GrowNetClassifier

torch.set_num_threads(1)

data = load_breast_cancer(as_frame=True)
X = data.data.copy()
X["size"] = pd.cut(X["mean radius"], bins=[0, 12, 16, np.inf],
                   labels=["small", "medium", "large"]).astype(str)
y = data.target.map(dict(enumerate(data.target_names)))  # "malignant" / "benign"
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
X_train.head(3)

# %%
# One pipeline, two final estimators
# ----------------------------------
# The string column is one-hot encoded, the numeric columns pass through.
# GrowNet standardises its inputs internally, so no scaler is needed.
def pipeline(model):
    encode = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["size"]),
        remainder="passthrough",
    )
    return make_pipeline(encode, model)


models = {
    "HistGradientBoosting": HistGradientBoostingClassifier(random_state=0),
    "GrowNet": GrowNetClassifier(n_estimators=10, random_state=0),
}
rows = []
for name, model in models.items():
    pipe = pipeline(model)
    start = time.perf_counter()
    pipe.fit(X_train, y_train)
    rows.append({
        "model": name,
        "fit time (s)": time.perf_counter() - start,
        "test accuracy": pipe.score(X_test, y_test),
    })
    print(name, "predicts", pipe.predict(X_test.iloc[:3]).tolist())
pd.DataFrame(rows).set_index("model").round(3)

# %%
# Stage by stage
# --------------
# Each stage adds one small network; ``staged_predict`` replays the ensemble
# after each of them, as scikit-learn's boosting estimators do. Early stopping
# is on: a tenth of the training rows (``validation_fraction``) is held out and
# the ensemble is cut at the stage with the best validation loss, so
# ``n_estimators_`` can be smaller than ``n_estimators``.
grownet = pipeline(GrowNetClassifier(n_estimators=10, random_state=0))
grownet.fit(X_train, y_train)
encoded_test = grownet[0].transform(X_test)
head = grownet[-1]
staged = [np.mean(p == y_test.to_numpy())
          for p in head.staged_predict(encoded_test)]
print(f"stages kept: {head.n_estimators_} of {head.n_estimators}")
print(f"learned boost rate: {head.boost_rate_:.3f}")

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
left.plot(-head.train_score_, "o-", label="training")
left.plot(-head.validation_score_, "s--", label="validation (early stopping)")
left.set_xlabel("stage (0: the constant model)")
left.set_ylabel("loss")
left.legend()
right.plot(range(1, len(staged) + 1), staged, "o-")
right.set_xlabel("stages used")
right.set_ylabel("test accuracy")
for ax in (left, right):
    ax.grid(alpha=0.3)
plt.tight_layout()

# %%
# The same ``random_state`` gives the same fit.
again = pipeline(GrowNetClassifier(n_estimators=10, random_state=0))
again.fit(X_train, y_train)
np.array_equal(again.predict_proba(X_test), grownet.predict_proba(X_test))
