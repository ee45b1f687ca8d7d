"""Intermediate layers of frozen PyTorch networks as scikit-learn features."""

from ._deploy import prepare_for_deployment
from ._display import LayerSweepDisplay, LayerWeightsDisplay
from ._extraction._cache import DiskCache, MemoryCache
from ._frozen import FrozenModel
from ._selection import (
    ILC,
    IntermediateLayerClassifier,
    LayerFusionClassifier,
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
    default_probe,
)
from .metrics import layer_metrics, layer_metrics_from_features

__all__ = [
    "DiskCache",
    "FrozenModel",
    "GrowNetClassifier",
    "GrowNetRegressor",
    "ILC",
    "IntermediateLayerClassifier",
    "KNNInterpolatedClassifier",
    "LayerFeatureTransformer",
    "LayerFusionClassifier",
    "LayerSweepDisplay",
    "LayerWeightsDisplay",
    "LinearProbeClassifier",
    "MemoryCache",
    "PrototypeClassifier",
    "__version__",
    "default_probe",
    "layer_metrics",
    "layer_metrics_from_features",
    "layer_sweep",
    "prepare_for_deployment",
]
