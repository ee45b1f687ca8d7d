"""Blocks computed alongside the requested layers, so later requests hit the cache."""

from ._layers import penultimate_layer

_PREFETCHABLE = ("auto", "mean", "max")


def prefetch_poolings(model, blocks, poolings, pooling_param):
    """Layers computed alongside the requested ones so later requests hit the cache.

    The candidates are the names users write for a stage: the block list,
    the model's top-level children and ``"penultimate"`` (the input of the last
    ``nn.Linear``); each name has its own entries. Only cheap, fixed-width poolings are prefetched (never
    ``"flatten"``, whose width can be huge, nor a callable, whose cost is
    unknown).
    """
    if isinstance(pooling_param, dict):
        default = "auto"
    elif isinstance(pooling_param, str) and pooling_param in _PREFETCHABLE:
        default = pooling_param
    elif isinstance(pooling_param, int) and not isinstance(pooling_param, bool):
        default = pooling_param
    else:
        return {}
    candidates = [*blocks, *(name for name, _ in model.named_children())]
    penultimate = penultimate_layer(model)
    if penultimate is not None:
        candidates.append(penultimate)
    return {name: default for name in dict.fromkeys(candidates) if name not in poolings}
