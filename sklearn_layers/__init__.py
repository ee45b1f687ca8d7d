"""Intermediate layers of frozen PyTorch networks as scikit-learn features."""

from ._extraction._cache import DiskCache, MemoryCache
from ._transformer import LayerFeatureTransformer
from ._version import __version__

__all__ = [
    "DiskCache",
    "LayerFeatureTransformer",
    "MemoryCache",
    "__version__",
]
