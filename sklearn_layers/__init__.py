"""Intermediate layers of frozen PyTorch networks as scikit-learn features."""

from ._deploy import prepare_for_deployment
from ._display import (
    EarlyExitDisplay,
    LayerCurveDisplay,
    LayerSweepDisplay,
    LayerWeightsDisplay,
)
from ._extraction._cache import DiskCache, MemoryCache
from ._frozen import FrozenModel
from ._selection import (
    ConcatFusion,
    EarlyExitClassifier,
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
    LinearProbeRegressor,
    PrototypeClassifier,
    RFRBoostClassifier,
    RFRBoostRegressor,
    default_probe,
)
from .metrics import layer_metrics_from_features

__all__ = [
    "ConcatFusion",
    "DiskCache",
    "EarlyExitClassifier",
    "EarlyExitDisplay",
    "FrozenModel",
    "GrowNetClassifier",
    "GrowNetRegressor",
    "IntermediateLayerClassifier",
    "IntermediateLayerRegressor",
    "KNNInterpolatedClassifier",
    "LayerFeatureTransformer",
    "LayerFusionClassifier",
    "LayerCurveDisplay",
    "LayerSweepDisplay",
    "LayerWeightsDisplay",
    "LinearProbeClassifier",
    "LinearProbeRegressor",
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
    "prepare_for_deployment",
]
