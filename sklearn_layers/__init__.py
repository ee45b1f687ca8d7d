"""Intermediate layers of frozen PyTorch networks as scikit-learn features."""

from ._display import LayerSweepDisplay, LayerWeightsDisplay
from ._extraction._cache import DiskCache, MemoryCache
from ._frozen import FrozenModel
from ._selection import (
    ConcatFusion,
    IntermediateLayerClassifier,
    IntermediateLayerRegressor,
    LayerFusionClassifier,
    StackingFusion,
    WeightedFusion,
    layer_metrics,
    layer_sweep,
)
from ._transformer import LayerFeatureTransformer
from ._version import __version__
from .heads import (
    GrowNetClassifier,
    GrowNetRegressor,
    KNNInterpolatedClassifier,
    LinearProbeClassifier,
    PrototypeClassifier,
    RFRBoostClassifier,
    RFRBoostRegressor,
    default_probe,
)
from .metrics import layer_metrics_from_features

__all__ = [
    "ConcatFusion",
    "DiskCache",
    "FrozenModel",
    "GrowNetClassifier",
    "GrowNetRegressor",
    "IntermediateLayerClassifier",
    "IntermediateLayerRegressor",
    "KNNInterpolatedClassifier",
    "LayerFeatureTransformer",
    "LayerFusionClassifier",
    "LayerSweepDisplay",
    "LayerWeightsDisplay",
    "LinearProbeClassifier",
    "MemoryCache",
    "PrototypeClassifier",
    "RFRBoostClassifier",
    "RFRBoostRegressor",
    "StackingFusion",
    "WeightedFusion",
    "__version__",
    "default_probe",
    "layer_metrics",
    "layer_metrics_from_features",
    "layer_sweep",
]
