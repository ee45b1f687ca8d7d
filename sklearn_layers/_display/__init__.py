"""Displays in scikit-learn's style: data stored at construction, drawn by ``plot``."""

from ._sweep import LayerSweepDisplay

__all__ = ["LayerSweepDisplay"]
