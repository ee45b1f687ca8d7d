"""
Which layer survives a distribution shift?
==========================================

:func:`~sklearn_layers.layer_sweep` fits every head on every layer of a frozen
network and scores it on held-out data, in distribution and under shifts;
:class:`~sklearn_layers.LayerSweepDisplay` draws the score per layer.

The network is an MNIST-trained CNN (``digit-recognizer-py``), the data
scikit-learn's digits. The probes are trained on upright, centred digits and tested on
held-out digits as they are, rotated by 30 degrees, and moved 5 pixels right
and down.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.model_selection import train_test_split

from sklearn_layers import (
    IntermediateLayerClassifier,
    LayerSweepDisplay,
    PrototypeClassifier,
    default_probe,
    layer_sweep,
)
from sklearn_layers.datasets import load_digits_28x28, shift_digits
from sklearn_layers.models import load_digit_cnn

torch.set_num_threads(1)

net = load_digit_cnn()
images, labels = load_digits_28x28(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    images, labels, train_size=500, test_size=500, stratify=labels, random_state=0
)
test_sets = {
    "in-distribution": (X_test, y_test),
    "rotation": (shift_digits(X_test, "rotation"), y_test),
    "translation": (shift_digits(X_test, "translation"), y_test),
}

# %%
# The sweep
# ---------
# Every block of the network, two heads, three test sets. All layers come out
# of one forward pass per row.
table = layer_sweep(
    net,
    X_train,
    y_train,
    layers="all",
    estimators=[("logistic", default_probe()), ("prototype", PrototypeClassifier())],
    test_sets=test_sets,
)
table.pivot_table(index=["layer_index", "layer"], columns=["head", "split"],
                  values="score").round(3)

# %%
# The plot
# --------
# One line style per test set (in distribution solid), bars for the 95%
# bootstrap interval over the 500 test digits (a few points wide: differences
# smaller than that are noise), a star on each line's best layer, and the
# majority-class rate as the chance level.
chance = np.bincount(y_test).max() / len(y_test)
display = LayerSweepDisplay.from_sweep(
    table[table["head"] == "logistic"], score_name="accuracy", chance_level=chance
)
display.ax_.set_title("Logistic probe on each layer of the digit CNN")

# %%
# What each layer costs
# ---------------------
# ``kind="cost"`` puts each layer's cost on the x axis: the share of a full
# forward pass spent to reach it (prediction stops there). Each line is then
# the Pareto front of its test set: the layers no cheaper layer matches, and
# so the best accuracy each budget buys; hollow markers are the layers off it.
display = LayerSweepDisplay.from_sweep(
    table[table["head"] == "logistic"], score_name="accuracy", chance_level=chance,
    kind="cost",
)
display.pareto_front_

# %%
# Choosing the layer with a few shifted samples
# ---------------------------------------------
# :class:`~sklearn_layers.IntermediateLayerClassifier` scores every layer the
# same way and keeps the best one. Given a small labelled validation set from
# the shifted distribution (here 100 translated digits), it picks the layer
# for that distribution instead of for the training one; the probe itself is
# still trained on centred digits only.
X_moved, y_moved = test_sets["translation"]
ilc = IntermediateLayerClassifier(net, layers="all")
ilc.fit(X_train, y_train, X_val=X_moved[:100], y_val=y_moved[:100])
print("chosen on 100 translated digits:", ilc.best_layer_)
print(f"accuracy on the other 400: {ilc.score(X_moved[100:], y_moved[100:]):.3f}")

# %%
ilc_cv = IntermediateLayerClassifier(net, layers="all", cv=3).fit(X_train, y_train)
print("chosen by cross-validation on centred digits:", ilc_cv.best_layer_)
print(f"accuracy on the same 400 translated digits: "
      f"{ilc_cv.score(X_moved[100:], y_moved[100:]):.3f}")

# %%
# :meth:`~sklearn_layers.LayerSweepDisplay.from_estimator` draws the layer
# scores each fitted classifier based its choice on, with a star on the layer
# it chose: cross-validation on the training distribution rewards the last
# layers, the shifted validation set an earlier one. Drawn on the same axes,
# the two share the head's colour and one legend; the cross-validated scores
# carry their 95% interval over the folds.
fig, ax = plt.subplots(figsize=(7, 4))
LayerSweepDisplay.from_estimator(ilc, ax=ax, chance_level="uniform")
LayerSweepDisplay.from_estimator(ilc_cv, ax=ax)
ax.set_title("Layer scores behind each choice")
plt.tight_layout()
