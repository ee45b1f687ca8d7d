"""A model's cache key: all about a network and the ambient settings that can change
its outputs, the same in every process. ``docs/user_guide/cache.rst`` lists what it
covers, which edits are seen and what it cannot see."""

import functools
import re
import threading
import warnings
import weakref

import numpy as np
import torch
import xxhash
from torch.utils.weak import WeakIdKeyDictionary

from .._version import __version__
from ._identity import Unnameable, class_digest, code_name, config_repr
from ._pooling import pooling_key

_NN_INTERNALS = frozenset(vars(torch.nn.Module())) | {"forward"}
# flags that change how a forward rounds, by their path under ``torch`` (the
# newer fp32_precision API exists from torch 2.9; the oneDNN ones act on the CPU)
_NUMERIC_FLAGS = tuple(f"backends.{flag}" for flag in (
    "cuda.matmul.allow_tf32", "cudnn.allow_tf32",
    "cuda.matmul.allow_fp16_reduced_precision_reduction",
    "cuda.matmul.allow_bf16_reduced_precision_reduction", "fp32_precision",
    "cuda.matmul.fp32_precision", "cudnn.conv.fp32_precision", "cudnn.rnn.fp32_precision",
    "mkldnn.matmul.fp32_precision", "mkldnn.conv.fp32_precision", "mkldnn.rnn.fp32_precision",
))


class IdentityMemo:
    """What a cache remembers about the models it met: tensor and class digests
    (weakly keyed), and the unkeyable callables warned about."""

    def __init__(self):
        self.lock = threading.RLock()
        self.tensors = WeakIdKeyDictionary()  # by identity: a tensor's == is elementwise
        self.classes = weakref.WeakKeyDictionary()
        self.warned = set()


def memo_of(cache):
    """The cache's :class:`IdentityMemo`; a cache of the user's own without one
    gets a fresh memo each call (nothing is written on it)."""
    memo = getattr(cache, "identity_memo", None)
    return memo if isinstance(memo, IdentityMemo) else IdentityMemo()


def count_rows(cache, n):
    """Add ``n`` to the count of rows that went through the network of a cache of
    the package's (one with an :class:`IdentityMemo`; no other object is written to)."""
    memo = getattr(cache, "identity_memo", None)
    if isinstance(memo, IdentityMemo):
        with memo.lock:
            cache.n_rows_computed += n


def _hooks(hooks):
    # the package's own hooks (capture) are not part of a model
    names = [code_name(hook) for hook in hooks.values()
             if not getattr(hook, "_sklearn_layers_internal", False)]
    if None in names:
        raise Unnameable("a hook")
    return repr(names).encode()


def _bytes(t):
    """A CPU tensor's bytes (numpy has no bfloat16 nor float8: read those as uint8)."""
    try:
        return t.numpy().tobytes()
    except TypeError:
        return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def _content_digest(t):
    """A digest of a tensor's dtype, shape, device and bytes."""
    header = f"{t.dtype}|{tuple(t.shape)}|{t.device}|".encode()
    return xxhash.xxh3_128_hexdigest(header + (_bytes(t.cpu()) if t.numel() else b""))


def _tensor_digest(tensor, memo):
    """:func:`_content_digest`, kept in ``memo`` while the tensor's state is unchanged."""
    if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
        raise Unnameable("an uninitialised (lazy) parameter")
    t = tensor.detach()
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor has no version counter: read it every call
        version = object()
    state = (t.data_ptr(), version, t.dtype, t.shape, t.stride(), t.device)
    if t.device.type == "cpu" and t.is_contiguous() and t.numel():  # 16 values, as bytes
        state += (_bytes(t.view(-1)[:: max(1, t.numel() // 16)]),)
    with memo.lock:
        known = memo.tensors.get(tensor)
    if known is None or known[0] != state:
        known = (state, _content_digest(t))
        with memo.lock:
            memo.tensors[tensor] = known
    return known[1]


def _leaf(value, memo, seen):
    """Tensors and arrays by content; any other object (a config shared by many
    modules, say) by :func:`config_repr`, once per call."""
    if isinstance(value, torch.Tensor):
        return f"tensor:{_tensor_digest(value, memo)}"
    if isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)  # object arrays hold addresses: name the objects instead
        content = (config_repr(a.tolist()) if a.dtype.hasobject
                   else xxhash.xxh3_128_hexdigest(np.ascontiguousarray(a).reshape(-1).view(np.uint8)))
        return f"ndarray|{a.dtype!r}|{a.shape}|{content}"
    if id(value) not in seen:
        seen[id(value)] = (value, config_repr(value))  # kept alive: ids stay unique
    return seen[id(value)][1]


def _module(h, path, module, memo, seen):
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and module.running_mean is None:
        raise Unnameable(f"{path}: batch statistics in eval mode make a row depend on its batch")
    cls = type(module)
    if cls not in seen:  # each class's code is checked once per call
        seen[cls] = f"{cls.__module__}.{cls.__qualname__}:{class_digest(cls, memo.classes)}"
    h.update(f"<{path}:{seen[cls]}>{module.extra_repr()}".encode())
    if isinstance(module, torch.jit.ScriptModule):  # its code and attributes, no addresses
        h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", module._c.dump_to_str(True, True, False)).encode())
    attributes = vars(module)
    leaf = functools.partial(_leaf, memo=memo, seen=seen)
    for attr in sorted(attributes.keys() - _NN_INTERNALS):
        h.update(f"{attr}={config_repr(attributes[attr], leaf)}".encode())
    override = attributes.get("forward")
    override = getattr(override, "sklearn_layers_wrapped", override)  # under the package's tap
    if override is not None:
        name = code_name(override)
        if name is None:
            raise Unnameable(f"instance forward {override!r}")
        h.update(f"forward={name}".encode())
    h.update(_hooks(module._forward_hooks) + _hooks(module._forward_pre_hooks))
    for kind, tensors in (("p", module._parameters), ("b", module._buffers)):
        for name, t in tensors.items():
            if t is not None:
                h.update(f"{kind}:{name}={_tensor_digest(t, memo)}".encode())


def model_fingerprint(model, memo=None):
    """A digest of the model's structure, code, hooks and tensors, or ``None`` when
    part of it has no stable name (a lambda attribute, a lazy parameter)."""
    memo = IdentityMemo() if memo is None else memo
    optimized = getattr(getattr(torch, "_dynamo", None), "eval_frame", None)
    if isinstance(model, getattr(optimized, "OptimizedModule", ())):
        model = model._orig_mod  # torch.compile: keyed by the eager module it runs
    h = xxhash.xxh3_128(f"{torch.__version__}|{__version__}".encode())
    try:
        for hooks in ("_global_forward_hooks", "_global_forward_pre_hooks"):
            h.update(_hooks(getattr(torch.nn.modules.module, hooks, {})))
        seen = {}  # per call: id(object) -> (object kept alive, its name); class -> digest
        for path, module in model.named_modules(remove_duplicate=False):
            _module(h, path, module, memo, seen)
    except Unnameable:
        return None
    return h.hexdigest()


def _read(get):
    """A setting's value, or the name of the error reading it raises (an older torch
    lacks the flag; torch refuses to read a TF32 flag set through both APIs)."""
    try:
        return get()
    except (AttributeError, RuntimeError, TypeError) as exc:
        return type(exc).__name__


def _flag(path):
    # "none" (the start-up value) defers to the legacy flags, read on their own;
    # torch cannot set it back, so "ieee" set again reads as a fresh process's "none"
    value = _read(lambda: functools.reduce(getattr, path.split("."), torch))
    return "ieee" if path.endswith("fp32_precision") and value == "none" else value


def _autocast(device_type):
    if hasattr(torch, "get_autocast_dtype"):
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    if device_type == "cpu":  # torch < 2.4: the CPU and CUDA only
        return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


def numeric_settings(device):
    """A digest of what changes how a forward on ``device`` rounds: autocast, the
    matmul precision, the default dtype and the switches in :data:`_NUMERIC_FLAGS`."""
    settings = (_read(lambda: _autocast(device.type)), _read(torch.get_float32_matmul_precision),
                _read(torch.get_default_dtype), *(_flag(path) for path in _NUMERIC_FLAGS))
    return xxhash.xxh3_64_hexdigest(repr(settings).encode())


def _unkeyable(poolings, cacheable, adapter):
    """``(what, label)`` of each part of the call that has no stable name."""
    found = [("pooling", p) for p in poolings.values() if pooling_key(p) is None]
    found += [(what, getattr(adapter, what)) for what in ("tokenizer", "preprocess")
              if not cacheable and getattr(adapter, what, None) is not None
              and getattr(adapter, "_name", lambda: 1)() is None]
    return [(what, f"{getattr(f, '__module__', None) or ''}.{f.__qualname__}"
             if isinstance(getattr(f, "__qualname__", None), str) else repr(f)[:100])
            for what, f in found]


def cache_identity(model, poolings, *, cache, cacheable, device, float_dtype, adapter=None):
    """The model's key for this call (fingerprint, floating dtype, device type, numeric
    settings), or ``None``: no cache, rows without stable identities, or a pooling,
    tokenizer, preprocess or model without a stable name (warned once per cache)."""
    if cache is None:
        return None
    memo = memo_of(cache)
    unkeyable = _unkeyable(poolings, cacheable, adapter)
    fingerprint = None if unkeyable or not cacheable else model_fingerprint(model, memo)
    if fingerprint is None and cacheable and not unkeyable:
        unkeyable = [("model", f"{type(model).__name__} (it holds a lambda, a closure or a "
                      "partial as an attribute, a hook or its forward, a lazy parameter, or "
                      "a batch norm without running statistics, whose rows depend on their "
                      "batch)")]
    for what, label in unkeyable:
        with memo.lock:
            if (what, label) in memo.warned:
                continue
            memo.warned.add((what, label))
        warnings.warn(
            f"The {what} {label} has no stable name, so the activation cache is not used "
            "and every row goes through the network on every call. Write it as a "
            "module-level function (def at the top of a module, plain default arguments "
            "only) to have its features cached.", UserWarning, stacklevel=4)
    if fingerprint is None:
        return None
    return f"{fingerprint}-{float_dtype}-{device.type}-{numeric_settings(device)}"
