"""
Grid search over layers and heads
=================================

A frozen network inside a scikit-learn :class:`~sklearn.pipeline.Pipeline`:
:class:`~sklearn_layers.LayerFeatureTransformer` extracts one layer of an
MNIST-trained CNN, a head classifies its features, and
:class:`~sklearn.model_selection.GridSearchCV` picks the layer and the head
together.

The network is the small CNN shipped in the ``digit-recognizer-py`` package,
the data scikit-learn's 8 x 8 digits, upscaled to MNIST's 28 x 28 layout.
"""

# %%
# Data and network
# ----------------
import shutil
import tempfile
import time

import matplotlib.pyplot as plt
import pandas as pd
import torch
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from sklearn_layers import (
    DiskCache,
    KNNInterpolatedClassifier,
    LayerFeatureTransformer,
    MemoryCache,
    PrototypeClassifier,
    default_probe,
)
from sklearn_layers.datasets import load_digits_28x28
from sklearn_layers.models import load_digit_cnn

torch.set_num_threads(1)

net = load_digit_cnn()
images, labels = load_digits_28x28(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    images, labels, train_size=600, stratify=labels, random_state=0
)
print(X_train.shape)

# %%
# The network's *block list* is what integer indices and ``layers="all"`` refer
# to: each convolution or linear layer together with the activation and pooling
# that follow it.
blocks = LayerFeatureTransformer(net, layers="all").fit(X_train[:1]).blocks_
blocks

# %%
# The pipeline and the grid
# -------------------------
# A private :class:`~sklearn_layers.MemoryCache` makes the bookkeeping below
# exact; the default, ``cache="memory"``, is a process-wide one that works the
# same way.
cache = MemoryCache()
pipe = Pipeline(
    [
        ("features", LayerFeatureTransformer(net, cache=cache)),
        ("head", default_probe()),
    ]
)
param_grid = {
    "features__layers": blocks[:4],
    "head": [
        default_probe(),
        PrototypeClassifier(),
        KNNInterpolatedClassifier(knn_weight=1.0),  # a pure similarity-weighted kNN
    ],
}
grid = GridSearchCV(pipe, param_grid, cv=3)

# %%
# The cache counts the rows that actually go through the network:
# ``n_rows_computed`` (a forward hook of our own would be part of the model's
# cache key, since a hook can change what the model returns).
start = time.perf_counter()
grid.fit(X_train, y_train)
elapsed = time.perf_counter() - start

n_fits = len(grid.cv_results_["params"]) * grid.n_splits_ + 1
print(f"{n_fits} pipeline fits in {elapsed:.1f} s")
print(f"rows through the network: {cache.n_rows_computed} for {len(X_train)} distinct rows")

# %%
# Every row went through the network once for the whole grid: the first miss of
# a row computes every block in the same forward pass and stores each pooled
# block in the cache; every later candidate and fold reads it from there.
# Cached features are a function of the row and the frozen weights only, so a
# row served from the cache in another fold leaks nothing.
#
# The scores
# ----------
results = pd.DataFrame(grid.cv_results_)
results["head"] = results["param_head"].map(
    lambda h: type(h[-1] if isinstance(h, Pipeline) else h).__name__
)
scores = results.pivot_table(
    index="param_features__layers", columns="head", values="mean_test_score"
).loc[blocks[:4]]
scores.round(3)

# %%
ax = scores.plot(marker="o", figsize=(6, 4))
ax.set_xlabel("layer")
ax.set_ylabel("mean CV accuracy")
ax.set_title("Grid search: every head on every layer")
ax.grid(alpha=0.3)
plt.tight_layout()

# %%
print("best:", grid.best_params_["features__layers"],
      type(grid.best_estimator_["head"]).__name__)
print(f"held-out accuracy: {grid.score(X_test, y_test):.3f}")

# %%
# A cache on disk
# ---------------
# A directory path (or a :class:`~sklearn_layers.DiskCache`) keeps the
# activations in an SQLite database that every process on this machine can
# read: worker processes of a parallel grid search, or a later session. Here a
# second transformer, with another layer, finds every row on disk: its
# ``transform`` never runs the network, and its ``fit`` runs one row (a fitted
# transformer's widths never come from a file someone else wrote).
directory = tempfile.mkdtemp()
first = LayerFeatureTransformer(net, layers="conv_layers.5", cache=DiskCache(directory))
first.fit_transform(X_train)

disk = DiskCache(directory)  # a new object: nothing in memory, as in a new session
second = LayerFeatureTransformer(net, layers="fc_layers.1", cache=disk).fit(X_train)
print(f"rows through the network in fit: {disk.n_rows_computed}")
features = second.transform(X_train)
print(f"rows through the network in transform: {disk.n_rows_computed - 1}")
print(f"features: {features.shape}")
shutil.rmtree(directory)
