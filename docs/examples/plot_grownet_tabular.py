"""
GrowNet in place of gradient-boosted trees
==========================================

:class:`~sklearn_layers.GrowNetClassifier` is gradient boosting whose weak
learners are shallow neural networks. It speaks the language of
:class:`~sklearn.ensemble.HistGradientBoostingClassifier`: the same parameter
names, pandas ``category`` columns and missing values read natively, sample
weights, early stopping, ``staged_predict``.

The data is scikit-learn's breast cancer table as a pandas DataFrame, with a
categorical column added (a coarse size class derived from ``mean radius``)
and one measurement missing in 10% of the rows, so that both models have to
deal with categories and NaN themselves.
"""

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from sklearn_layers import GrowNetClassifier

torch.set_num_threads(1)

data = load_breast_cancer(as_frame=True)
X = data.data.copy()
X["size"] = pd.cut(X["mean radius"], bins=[0, 12, 16, np.inf],
                   labels=["small", "medium", "large"])  # a category column
rng = np.random.default_rng(0)
X.loc[rng.random(len(X)) < 0.1, "worst texture"] = np.nan  # not measured
y = data.target.map(dict(enumerate(data.target_names)))  # "malignant" / "benign"
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.3, stratify=y, random_state=0
)
X_train[["mean radius", "size", "worst texture"]].head(3)

# %%
# The same call for both models
# -----------------------------
# ``categorical_features="from_dtype"`` (the default of both) one-hot encodes
# the ``category`` column inside GrowNet; a missing value becomes the column's
# mean plus a missingness indicator the networks can learn from.
models = {
    "HistGradientBoosting": HistGradientBoostingClassifier(random_state=0),
    "GrowNet": GrowNetClassifier(random_state=0),
}
rows = []
for name, model in models.items():
    start = time.perf_counter()
    model.fit(X_train, y_train)
    rows.append({
        "model": name,
        "fit time (s)": time.perf_counter() - start,
        "test accuracy": model.score(X_test, y_test),
        "stages": model.n_iter_,
    })
    print(name, "predicts", model.predict(X_test.iloc[:3]).tolist())
pd.DataFrame(rows).set_index("model").round(3)

# %%
# Stage by stage
# --------------
# Each stage adds one small network; ``staged_predict`` replays the ensemble
# after each of them, as scikit-learn's boosting estimators do. Early stopping
# is on by default: a tenth of the training rows (``validation_fraction``) is
# held out *before* anything is learned from the data, and the ensemble is
# cut back to the stage with the best validation loss.
grownet = models["GrowNet"]
staged = [np.mean(p == y_test.to_numpy()) for p in grownet.staged_predict(X_test)]
print(f"stages kept: {grownet.n_iter_} of {len(grownet.validation_score_) - 1} trained")

fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
left.plot(-grownet.train_score_, "o-", label="training")
left.plot(-grownet.validation_score_, "s--", label="validation (early stopping)")
left.axvline(grownet.n_iter_, color="grey", lw=1)
left.set_xlabel("stage (0: the constant model)")
left.set_ylabel("log loss")
left.legend()
right.plot(range(1, len(staged) + 1), staged, "o-")
right.set_xlabel("stages used")
right.set_ylabel("test accuracy")
for ax in (left, right):
    ax.grid(alpha=0.3)
plt.tight_layout()

# %%
# Weights and reproducibility
# ---------------------------
# ``class_weight="balanced"`` is the same fit as the equivalent
# ``sample_weight``, and the same ``random_state`` gives the same fit.
from sklearn.utils.class_weight import compute_sample_weight  # noqa: E402

balanced = GrowNetClassifier(class_weight="balanced", random_state=0).fit(X_train, y_train)
weighted = GrowNetClassifier(random_state=0).fit(
    X_train, y_train, sample_weight=compute_sample_weight("balanced", y_train)
)
np.array_equal(balanced.predict_proba(X_test), weighted.predict_proba(X_test))
