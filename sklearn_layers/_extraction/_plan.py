"""What one extraction computes and under which cache keys.

A :class:`Plan` names, for one call, the requested layers and their keys, the
blocks computed alongside them on a cache miss (prefetch), and the cache
itself. A layer's key is ``"<name>|<pooling>|<precision>"``: each name has its
own entries, even where two names denote one tensor (a stage and its last
child), so an entry is only ever served for the name it was computed for.
"""

from dataclasses import dataclass, field

from ._pooling import pooling_key


@dataclass
class Plan:
    """The layers one extraction captures and the keys it caches them under.

    Attributes
    ----------
    poolings : dict
        Requested layer -> pooling, in output order.
    captured : dict
        Every layer hooked during a miss -> pooling (requested first).
    keys : dict
        Captured layer -> cache key (empty without a cache).
    optional : set
        Captured layers that may fail or not run (prefetched blocks).
    cache : object or None
        The cache, or None when this call cannot use one.
    fingerprint : str or None
        The model's cache identity.
    """

    poolings: dict
    captured: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)
    optional: set = field(default_factory=set)
    cache: object = None
    fingerprint: str = None

    @property
    def early_exit(self):
        return not self.optional

    def keyed(self, arrays):
        """Captured arrays keyed for the cache."""
        return {self.keys[name]: value for name, value in arrays.items() if name in self.keys}


def make_plan(poolings, *, cache=None, fingerprint=None, prefetch=None, precision="float32"):
    """Decide what to capture and how to key it.

    Parameters
    ----------
    poolings : dict
        Requested layer -> pooling.
    cache : cache object, default=None
    fingerprint : str, default=None
        From :func:`._fingerprint.cache_identity`; None means no caching.
    prefetch : dict, default=None
        Block -> pooling to compute alongside on a miss.
    precision : str, default="float32"
        The forward's precision (:mod:`._precision`), a term of every key: the
        identity also reads the ambient autocast, but the key names what the
        call asked for, whatever reads the ambient state.

    Returns
    -------
    plan : Plan
    """
    plan = Plan(poolings=dict(poolings), captured=dict(poolings))
    if fingerprint is None:
        return plan  # no cache: early exit, nothing prefetched
    plan.cache, plan.fingerprint = cache, fingerprint
    prefetched = {n: p for n, p in (prefetch or {}).items() if n not in plan.captured}
    plan.captured.update(prefetched)
    plan.optional = set(prefetched)
    plan.keys = {name: f"{name}|{pooling_key(p)}|{precision}" for name, p in plan.captured.items()}
    return plan
