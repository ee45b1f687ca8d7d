"""Choosing a layer: IntermediateLayerClassifier and layer_sweep."""

from ..heads import default_probe
from ._ilc import ILC, IntermediateLayerClassifier
from ._sweep import layer_sweep

__all__ = ["ILC", "IntermediateLayerClassifier", "default_probe", "layer_sweep"]
