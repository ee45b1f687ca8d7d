"""Boosted networks for tabular data and layer features: GrowNet."""

from ._classifier import GrowNetClassifier
from ._regressor import GrowNetRegressor
from ._rfrboost import RFRBoostClassifier, RFRBoostRegressor

__all__ = [
    "GrowNetClassifier",
    "GrowNetRegressor",
    "RFRBoostClassifier",
    "RFRBoostRegressor",
]
