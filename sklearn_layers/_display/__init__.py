"""Displays in scikit-learn's style: data stored at construction, drawn by ``plot``."""

from ._curves import LayerCurveDisplay
from ._early_exit import EarlyExitDisplay
from ._sweep import LayerSweepDisplay
from ._weights import LayerWeightsDisplay

__all__ = ["EarlyExitDisplay", "LayerCurveDisplay", "LayerSweepDisplay", "LayerWeightsDisplay"]
