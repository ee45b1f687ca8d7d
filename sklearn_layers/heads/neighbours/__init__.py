"""Neighbour heads: class prototypes and kNN blended with a linear head."""

from ._knn import KNNInterpolatedClassifier
from ._prototype import PrototypeClassifier

__all__ = ["KNNInterpolatedClassifier", "PrototypeClassifier"]
