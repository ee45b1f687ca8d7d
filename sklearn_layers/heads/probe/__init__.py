"""The linear probes: a whitened logistic regression and its many-split path, a ridge."""

from ._default import default_probe
from ._linear_probe import LinearProbeClassifier
from ._path import linear_probe_path
from ._regressor import LinearProbeRegressor

__all__ = [
    "LinearProbeClassifier",
    "LinearProbeRegressor",
    "default_probe",
    "linear_probe_path",
]
