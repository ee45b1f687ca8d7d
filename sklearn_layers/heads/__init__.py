"""Heads: scikit-learn estimators for any 2-D numeric X (layer features or tabular data).

They import no network code: use them on :class:`~sklearn_layers.LayerFeatureTransformer`
output or on plain tabular data.
"""

from .boosting import (
    GrowNetClassifier,
    GrowNetRegressor,
    RFRBoostClassifier,
    RFRBoostRegressor,
)
from .neighbours import KNNInterpolatedClassifier, PrototypeClassifier
from .probe import (
    LinearProbeClassifier,
    LinearProbeRegressor,
    default_probe,
    linear_probe_path,
)

__all__ = [
    "GrowNetClassifier",
    "GrowNetRegressor",
    "KNNInterpolatedClassifier",
    "LinearProbeClassifier",
    "LinearProbeRegressor",
    "PrototypeClassifier",
    "RFRBoostClassifier",
    "RFRBoostRegressor",
    "default_probe",
    "linear_probe_path",
]
