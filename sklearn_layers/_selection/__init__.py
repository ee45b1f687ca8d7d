"""Choosing and combining layers: selectors that take an extractor.

The intermediate-layer classifier and regressor, the fusion classifier and
its strategies, ``layer_sweep`` and ``layer_metrics``.
"""

from ..heads import default_probe
from ._fusion import LayerFusionClassifier
from ._fusion_modes import ConcatFusion, StackingFusion, WeightedFusion
from ._ilc import IntermediateLayerClassifier
from ._ilr import IntermediateLayerRegressor
from ._layer_metrics import layer_metrics
from ._sweep import layer_sweep

__all__ = [
    "ConcatFusion",
    "IntermediateLayerClassifier",
    "IntermediateLayerRegressor",
    "LayerFusionClassifier",
    "StackingFusion",
    "WeightedFusion",
    "default_probe",
    "layer_metrics",
    "layer_sweep",
]
