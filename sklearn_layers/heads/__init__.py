"""Heads: scikit-learn estimators for any 2-D numeric X (layer features or tabular data).

They import no network code: use them on :class:`~sklearn_layers.LayerFeatureTransformer`
output or on plain tabular data.
"""

from ._grownet import GrowNetClassifier, GrowNetRegressor
from ._knn import KNNInterpolatedClassifier
from ._linear_probe import LinearProbeClassifier, default_probe
from ._probe_path import linear_probe_path
from ._prototype import PrototypeClassifier

__all__ = [
    "GrowNetClassifier",
    "GrowNetRegressor",
    "KNNInterpolatedClassifier",
    "LinearProbeClassifier",
    "PrototypeClassifier",
    "default_probe",
    "linear_probe_path",
]
