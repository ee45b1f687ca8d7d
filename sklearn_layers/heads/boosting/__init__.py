"""Boosted networks for tabular data and layer features: GrowNet."""

from ._classifier import GrowNetClassifier
from ._regressor import GrowNetRegressor

__all__ = ["GrowNetClassifier", "GrowNetRegressor"]
