"""The linear probe: a whitened logistic regression and its many-split path."""

from ._linear_probe import LinearProbeClassifier, default_probe
from ._path import linear_probe_path

__all__ = ["LinearProbeClassifier", "default_probe", "linear_probe_path"]
