"""A model's cache identity: everything about a network and the ambient settings
that can change its outputs, the same in every process.

The module tree, each module's configuration (``extra_repr()``, attributes:
plain data, configs, tensors and arrays, functions by code), every module
class's code (:func:`._identity.class_digest`), an instance ``forward``, a
TorchScript module's code, the hooks (by code), every parameter and buffer,
torch's and this package's versions, the floating dtype, device type and
numeric settings. A tensor's bytes are hashed once per state, in an
:class:`IdentityMemo` living on the cache. ``docs/user_guide/cache.rst`` lists
which edits are seen and what is not covered.
"""

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
from ._identity import Unnameable, class_digest, code_name, config_repr, plain_repr
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
    """What a cache remembers about the models it met: tensor and class digests and
    tokenizer vocabularies (weakly keyed), and the unkeyable callables warned about."""

    def __init__(self):
        self.lock = threading.RLock()
        self.tensors = WeakIdKeyDictionary()  # by identity: a tensor's == is elementwise
        self.classes = weakref.WeakKeyDictionary()
        self.tokenizers = weakref.WeakKeyDictionary()
        self.warned = set()


def memo_of(cache):
    """The :class:`IdentityMemo` living on ``cache`` (a fresh one if it has none)."""
    memo = getattr(cache, "identity_memo", None)
    if not isinstance(memo, IdentityMemo):
        memo = IdentityMemo()
        try:
            cache.identity_memo = memo
        except AttributeError:  # a cache object without a __dict__: no memo
            pass
    return memo


def count_rows(cache, n):
    """Add ``n`` to the cache's count of rows that went through the network."""
    if cache is not None:
        with memo_of(cache).lock:
            try:
                cache.n_rows_computed = getattr(cache, "n_rows_computed", 0) + n
            except AttributeError:  # a cache object that takes no attribute
                pass


def _hooks(hooks):
    # the package's own hooks (capture) are not part of a model
    names = [code_name(hook) for hook in hooks.values()
             if not getattr(hook, "_sklearn_layers_internal", False)]
    if None in names:
        raise Unnameable("a hook")
    return repr(names).encode()


def _bytes(t):
    """A CPU tensor's bytes as a numpy buffer (numpy has no bfloat16 nor float8: uint8)."""
    try:
        return t.numpy()
    except TypeError:
        return t.contiguous().reshape(-1).view(torch.uint8).numpy()


def _content_digest(t):
    """A digest of a tensor's dtype, shape, device and bytes."""
    header = f"{t.dtype}|{tuple(t.shape)}|{t.device}|".encode()
    return xxhash.xxh3_128_digest(header + (_bytes(t.cpu().contiguous()).tobytes() if t.numel() else b""))


def _tensor(h, name, tensor, memo):
    """Hash a tensor by name and content digest, the digest kept per tensor state."""
    if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
        raise Unnameable(f"{name} is an uninitialised (lazy) parameter")
    t = tensor.detach()
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor has no version counter: read it every call
        version = object()
    state = (t.data_ptr(), version, t.dtype, t.shape, t.stride(), t.device)
    if t.device.type == "cpu" and t.is_contiguous() and t.numel():  # 16 values, as bytes
        state += (_bytes(t.view(-1)[:: max(1, t.numel() // 16)]).tobytes(),)
    with memo.lock:
        known = memo.tensors.get(tensor)
    if known is None or known[0] != state:
        known = (state, _content_digest(t))
        with memo.lock:
            memo.tensors[tensor] = known
    h.update(name.encode() + known[1])


def _value(h, name, value, memo, seen, depth=0):
    """Hash an attribute: plain data by repr, tensors and arrays by bytes (inside
    tuples, lists and dicts too), anything else by :func:`config_repr`."""
    kind = type(value)  # not isinstance: it reads __class__, slow on a HF config
    plain = None if id(value) in seen else plain_repr(value)
    if plain is not None:
        h.update(f"{name}={plain}".encode())
    elif issubclass(kind, torch.Tensor):
        _tensor(h, name, value, memo)
    elif issubclass(kind, (np.ndarray, np.generic)):
        a = np.asarray(value)
        h.update(f"{name}|ndarray|{a.dtype!r}|{a.shape}".encode())
        # object arrays hold addresses: name the objects instead
        h.update(config_repr(a.tolist()).encode() if a.dtype.hasobject
                 else np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    elif issubclass(kind, (tuple, list, dict)) and depth < 8:
        h.update(f"{name}={kind.__qualname__}[{len(value)}]".encode())
        items = (sorted(((config_repr(k), v) for k, v in value.items()), key=lambda kv: kv[0])
                 if isinstance(value, dict) else enumerate(value))
        for key, item in items:
            _value(h, f"{name}[{key}]", item, memo, seen, depth + 1)
    else:  # an object shared by many modules (a config) is named once per call
        if id(value) not in seen:
            seen[id(value)] = (value, config_repr(value))  # kept alive: ids stay unique
        h.update(f"{name}={seen[id(value)][1]}".encode())


def _module(h, path, module, memo, seen):
    cls = type(module)
    if cls not in seen:  # each class's code is checked once per call
        seen[cls] = f"{cls.__module__}.{cls.__qualname__}:{class_digest(cls, memo.classes)}"
    h.update(f"<{path}:{seen[cls]}>{module.extra_repr()}".encode())
    if isinstance(module, torch.jit.ScriptModule):  # its code and attributes, no addresses
        h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", module._c.dump_to_str(True, True, False)).encode())
    attributes = vars(module)
    for attr in sorted(attributes.keys() - _NN_INTERNALS):
        _value(h, attr, attributes[attr], memo, seen)
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
                _tensor(h, f"{kind}:{name}", t, memo)


def model_fingerprint(model, memo=None):
    """A hex digest of the model's structure, code, hooks and tensors, or ``None``
    when part of it has no stable identity (a lambda attribute, a closure as
    ``forward``, a lazy parameter). ``memo``: an :class:`IdentityMemo` (a cache's)."""
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
    if not hasattr(torch, "get_autocast_dtype"):  # torch < 2.4: the CPU and CUDA only
        if device_type == "cpu":
            return torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def numeric_settings(device):
    """A digest of the ambient settings that change how a forward on ``device``
    rounds: autocast for its type, the float32 matmul precision, the default
    dtype and the TF32 and reduced-precision switches (:data:`_NUMERIC_FLAGS`)."""
    settings = (_read(lambda: _autocast(device.type)), _read(torch.get_float32_matmul_precision),
                _read(torch.get_default_dtype), *(_flag(path) for path in _NUMERIC_FLAGS))
    return xxhash.xxh3_64_hexdigest(repr(settings).encode())


def cache_identity(model, poolings, *, cache, cacheable, device, float_dtype, adapter=None):
    """The model's cache key for this call, or None when nothing may be cached.

    The fingerprint, the floating dtype the model runs in, the device type and
    the numeric settings. Nothing is cached without a cache, for input without
    stable row identities, or when a pooling, the tokenizer, the preprocess or
    the model has no stable name; a callable without one is warned about once
    per cache.
    """
    if cache is None:
        return None
    memo = memo_of(cache)
    unkeyable = [("pooling", p) for p in poolings.values() if pooling_key(p) is None]
    for what in ("tokenizer", "preprocess") if not cacheable else ():
        found = getattr(adapter, what, None)
        if found is not None and getattr(adapter, "_name", lambda: 1)() is None:
            unkeyable.append((what, found))
    fingerprint = None if unkeyable or not cacheable else model_fingerprint(model, memo)
    if fingerprint is None and cacheable and not unkeyable:
        unkeyable.append(("model", model))
    for what, found in unkeyable:
        name = getattr(found, "__qualname__", None)
        label = (f"{type(found).__name__} (it holds a lambda, a closure or a partial as an "
                 "attribute, a hook or its forward, or a lazy parameter)" if what == "model"
                 else f"{getattr(found, '__module__', None) or ''}.{name}" if isinstance(name, str)
                 else repr(found)[:100])
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
