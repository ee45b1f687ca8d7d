"""Boosted networks for tabular data and layer features: GrowNet."""

from ._grownet import GrowNetClassifier, GrowNetRegressor

__all__ = ["GrowNetClassifier", "GrowNetRegressor"]
