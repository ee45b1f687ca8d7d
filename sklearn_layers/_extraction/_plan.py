"""What one extraction computes and under which cache keys.

A :class:`Plan` names, for one call, the requested layers and their keys, the
blocks computed alongside them on a cache miss (prefetch), and the cache
itself. A layer's key is ``"<canonical name>|<pooling>"``: names that denote
the very same tensor (:mod:`._aliases`) share the canonical name, so they
share entries.
"""

import functools
import warnings
from dataclasses import dataclass, field

import torch
import xxhash

from ._fingerprint import count_rows, memo_of, model_fingerprint
from ._layers import penultimate_layer
from ._pooling import pooling_key

_PREFETCHABLE = ("auto", "mean", "max")


def prefetch_poolings(model, blocks, poolings, pooling_param):
    """Layers computed alongside the requested ones so later requests hit the cache.

    The candidates are the names users write for a stage: the block list,
    the model's top-level children and ``"penultimate"`` (the input of the last
    ``nn.Linear``); names that denote the same tensor are cached once
    (:mod:`._aliases`). Only cheap, fixed-width poolings are prefetched (never
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
    canonical : dict
        Captured layer -> the name its key is made of (empty without a cache).
    checks : list of (str, str)
        Pairs of captured layers sharing a key, the first one captured first:
        their features are compared before anything is stored under the key.
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
    canonical: dict = field(default_factory=dict)
    checks: list = field(default_factory=list)
    optional: set = field(default_factory=set)
    cache: object = None
    fingerprint: str = None

    @property
    def early_exit(self):
        return not self.optional

    def keyed(self, arrays):
        """Captured arrays keyed for the cache (one entry per key)."""
        return {self.keys[name]: value for name, value in arrays.items() if name in self.keys}


# Flags that change how a forward rounds, by their path under ``torch``: the
# legacy TF32 switches, and the per-backend precisions of the newer API
# (torch >= 2.9; the oneDNN ones apply on the CPU).
_NUMERIC_FLAGS = (
    "backends.cuda.matmul.allow_tf32",
    "backends.cudnn.allow_tf32",
    "backends.cuda.matmul.allow_fp16_reduced_precision_reduction",
    "backends.cuda.matmul.allow_bf16_reduced_precision_reduction",
    "backends.fp32_precision",
    "backends.cuda.matmul.fp32_precision",
    "backends.cudnn.conv.fp32_precision",
    "backends.cudnn.rnn.fp32_precision",
    "backends.mkldnn.matmul.fp32_precision",
    "backends.mkldnn.conv.fp32_precision",
    "backends.mkldnn.rnn.fp32_precision",
)


def _read(get):
    """A setting's value, or the name of the error reading it raises.

    An older torch lacks some flags (``AttributeError``); torch refuses to read
    a TF32 flag set through both its legacy and its new API (``RuntimeError``).
    """
    try:
        return get()
    except (AttributeError, RuntimeError, TypeError) as exc:
        return type(exc).__name__


def _flag(path):
    """A flag's value; an ``fp32_precision`` of ``"none"`` reads as ``"ieee"``.

    ``"none"`` (the start-up value) defers to the legacy settings, which are
    read on their own; torch cannot set it back once an fp32 precision was
    set, so a process that set ``"highest"`` again reads ``"ieee"`` where a
    fresh worker reads ``"none"``: the same arithmetic, one cache identity.
    """
    value = _read(lambda: functools.reduce(getattr, path.split("."), torch))
    if path.endswith("fp32_precision") and value == "none":
        return "ieee"
    return value


def _autocast(device_type):
    if device_type in ("cpu", "cuda") and not hasattr(torch, "get_autocast_dtype"):
        # torch < 2.4 knows autocast on the CPU and CUDA only
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    enabled = torch.is_autocast_enabled(device_type)
    return enabled, torch.get_autocast_dtype(device_type)


def numeric_settings(device):
    """The ambient settings that change how a forward pass on ``device`` rounds.

    Autocast for the device's type (whether it is on, and its dtype), the
    float32 matmul precision, the TF32 and reduced-precision switches of
    cuBLAS, cuDNN and oneDNN (:data:`_NUMERIC_FLAGS`), and the default dtype
    (of tensors a forward creates). A few flag reads: no cost per row.

    Parameters
    ----------
    device : torch.device
        The device the forward pass runs on.

    Returns
    -------
    settings : str
        A short digest naming these settings.
    """
    settings = (
        _read(lambda: _autocast(device.type)),
        _read(torch.get_float32_matmul_precision),
        _read(torch.get_default_dtype),
        *(_flag(path) for path in _NUMERIC_FLAGS),
    )
    return xxhash.xxh3_64_hexdigest(repr(settings).encode())


def cache_identity(model, poolings, *, cache, cacheable, device, float_dtype, adapter=None):
    """The model's cache key for this call, or None when nothing may be cached.

    The key is the model's fingerprint (:func:`._fingerprint.model_fingerprint`,
    its tensor digests kept on the cache), the floating dtype it runs in, the
    device type and the ambient numeric settings (:func:`numeric_settings`:
    features computed under autocast are not served to a call without it).
    Nothing is cached without a cache, for input without stable row
    identities, or when a pooling, the tokenizer, the preprocess or the model
    has no stable name; a callable without one is warned about once per cache.
    """
    if cache is None:
        return None
    memo = memo_of(cache)
    unkeyable = [("pooling", p) for p in poolings.values() if pooling_key(p) is None]
    if not cacheable:
        for what in ("tokenizer", "preprocess"):
            found = getattr(adapter, what, None)
            if found is not None and getattr(adapter, "_name", lambda: 1)() is None:
                unkeyable.append((what, found))
    fingerprint = None if unkeyable or not cacheable else model_fingerprint(model, memo)
    if fingerprint is None and cacheable and not unkeyable:
        unkeyable.append(("model", model))
    for what, found in unkeyable:
        _warn_unkeyable(memo, what, found)
    if fingerprint is None:
        return None
    return f"{fingerprint}-{float_dtype}-{device.type}-{numeric_settings(device)}"


def _warn_unkeyable(memo, what, found):
    label = (f"{type(found).__name__} (it holds a lambda, a closure or a partial as an "
             "attribute, a hook or its forward, or a lazy parameter)" if what == "model"
             else repr(found))
    with memo.lock:
        if (what, label) in memo.warned:
            return
        memo.warned.add((what, label))
    warnings.warn(
        f"The {what} {label} has no stable name, so the activation cache is not used "
        "and every row goes through the network on every call. Write it as a "
        "module-level function (def at the top of a module, plain default arguments "
        "only) to have its features cached.",
        UserWarning, stacklevel=5,
    )


def make_plan(poolings, *, cache=None, fingerprint=None, prefetch=None, aliases=None):
    """Decide what to capture and how to key it.

    Parameters
    ----------
    poolings : dict
        Requested layer -> pooling.
    cache : cache object, default=None
    fingerprint : str, default=None
        From :func:`cache_identity`; None means no caching.
    prefetch : dict, default=None
        Block -> pooling to compute alongside on a miss.
    aliases : dict, default=None
        Name -> canonical name (:mod:`._aliases`).

    Returns
    -------
    plan : Plan
    """
    plan = Plan(poolings=dict(poolings), captured=dict(poolings))
    if fingerprint is None:
        return plan  # no cache: early exit, nothing prefetched
    plan.cache, plan.fingerprint = cache, fingerprint
    aliases = aliases or {}
    prefetched = {n: p for n, p in (prefetch or {}).items() if n not in plan.captured}
    plan.captured.update(prefetched)
    plan.optional = set(prefetched)
    owners = {}
    for name, p in plan.captured.items():
        plan.canonical[name] = aliases.get(name, name)
        k = plan.keys[name] = f"{plan.canonical[name]}|{pooling_key(p)}"
        if k in owners:
            # another name of the very same tensor, requested or prefetched: it
            # is compared with the first on every batch before either is stored
            plan.checks.append((owners[k], name))
        else:
            owners[k] = name
    return plan


def probe_widths(extract, model, adapter, poolings, *, device, cache=None, prefetch=None):
    """Feature width of each layer, from the first row of ``adapter``.

    The row may come from a cache whose every entry this process computed (a
    :class:`MemoryCache`); from any other cache it is computed: an entry
    written by someone else (a foreign file in a shared cache directory) must
    not decide the widths a fitted transformer promises.
    """
    if cache is not None and hasattr(adapter, "tokenizer"):
        adapter.memo = memo_of(cache).tokenizers
    counted = cache
    if not getattr(cache, "computed_here", False):
        cache = prefetch = None
    features = extract(
        model, _FirstRow(adapter), poolings, batch_size=1, device=device, cache=cache,
        prefetch=prefetch, widths=None,
    )
    if cache is None:
        count_rows(counted, 1)
    return {name: int(features[name].shape[1]) for name in poolings}


class _FirstRow:
    """An adapter view holding only the first row of another adapter."""

    def __init__(self, adapter):
        self.kind = adapter.kind
        self.cacheable = getattr(adapter, "cacheable", True)
        for what in ("tokenizer", "preprocess", "_name"):  # named in a warning
            if hasattr(adapter, what):
                setattr(self, what, getattr(adapter, what))
        self._chunk = next(adapter.chunks(1))

    def __len__(self):
        return 1

    def chunks(self, batch_size):
        yield _OneRow(self._chunk)


class _OneRow:
    def __init__(self, chunk):
        self.start, self.n, self._chunk = 0, 1, chunk

    @property
    def digests(self):
        return self._chunk.digests[:1]

    def order(self, positions):
        return positions

    def build(self, positions):
        return self._chunk.build([0])
