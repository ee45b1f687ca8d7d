"""Choosing and combining layers: the ILC, the fusion classifier and layer_sweep."""

from ..heads import default_probe
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
