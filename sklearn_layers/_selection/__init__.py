"""Choosing and combining layers: IntermediateLayerClassifier, LayerFusionClassifier, layer_sweep."""

from ._defaults import default_probe
from ._fusion import LayerFusionClassifier
from ._ilc import ILC, IntermediateLayerClassifier
from ._sweep import layer_sweep

__all__ = [
    "ILC",
    "IntermediateLayerClassifier",
    "LayerFusionClassifier",
    "default_probe",
    "layer_sweep",
]
