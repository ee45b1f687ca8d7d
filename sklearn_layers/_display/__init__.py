"""Displays in scikit-learn's style: data stored at construction, drawn by ``plot``."""

from ._sweep import LayerSweepDisplay
from ._weights import LayerWeightsDisplay

__all__ = ["LayerSweepDisplay", "LayerWeightsDisplay"]
