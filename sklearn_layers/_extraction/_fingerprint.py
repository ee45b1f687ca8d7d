"""A digest of everything about a network that can change its outputs.

The module tree, each module's configuration (``extra_repr()``, plain
attributes, ``to_dict()`` configs, tensors and arrays held as attributes,
functions by their code), every module class's code
(:func:`._identity.class_digest`), an instance ``forward``, a TorchScript
module's code, the hooks (by code), every parameter and buffer and torch's
version. Something without a stable name (a lambda attribute, a lazy
parameter) leaves the model without a key. A tensor's bytes are hashed once per
state (data pointer, version counter, dtype, shape, strides, device, and 16
sampled values on the CPU), in an :class:`IdentityMemo` living on the cache.
``docs/user_guide/cache.rst`` lists which edits are seen and what is not covered.
"""


import re
import threading
import weakref

import numpy as np
import torch
import xxhash
from torch.utils.weak import WeakIdKeyDictionary

from ._identity import Unnameable, class_digest, code_name, config_repr, plain_repr

_NN_INTERNALS = frozenset(vars(torch.nn.Module())) | {"forward"}
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks")


class IdentityMemo:
    """What a cache remembers about the models it met: tensor and class digests
    and tokenizer vocabularies (weakly keyed), and which unkeyable callables
    were already warned about."""

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
    if cache is None:
        return
    with memo_of(cache).lock:
        try:
            cache.n_rows_computed = getattr(cache, "n_rows_computed", 0) + n
        except AttributeError:  # a cache object that takes no attribute
            pass


def _hook_names(hooks):
    if not hooks:
        return b"[]"
    # the package's own hooks (capture, alias watch) are not part of a model
    names = [code_name(hook) for hook in hooks.values()
             if not getattr(hook, "_sklearn_layers_internal", False)]
    if None in names:
        raise Unnameable("a hook")
    return repr(names).encode()


def _as_bytes(t):
    t = t.contiguous()
    try:
        return t.numpy()  # a buffer over the tensor's own bytes
    except TypeError:  # numpy has no bfloat16 (nor float8): read the bytes
        return t.reshape(-1).view(torch.uint8).numpy()


def _tensor(h, name, tensor, memo):
    if isinstance(tensor, torch.nn.parameter.UninitializedTensorMixin):
        raise Unnameable(f"{name} is an uninitialised (lazy) parameter")
    t = tensor.detach()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{t.device}".encode())
    if not t.numel():
        return
    try:
        version = tensor._version
    except RuntimeError:  # an inference tensor has no version counter: read it every call
        version = object()
    state = (t.data_ptr(), version, t.dtype, t.shape, t.stride(), t.device)
    if t.device.type == "cpu" and t.is_contiguous():
        flat = t.view(-1)
        sample = flat[:: max(1, flat.numel() // 16)]
        try:  # as bytes: a NaN equals itself
            state += (sample.numpy().tobytes(),)
        except TypeError:  # numpy has no bfloat16
            state += (sample.contiguous().view(torch.uint8).numpy().tobytes(),)
    with memo.lock:
        known = memo.tensors.get(tensor)
    if known is None or known[0] != state:
        known = (state, xxhash.xxh3_128_digest(_as_bytes(t.cpu())))
        with memo.lock:
            memo.tensors[tensor] = known
    h.update(known[1])


def _value(h, name, value, memo, seen, depth=0):
    """Hash an attribute: plain data by repr, tensors and arrays by bytes (inside
    tuples, lists and dicts too), anything else by :func:`config_repr`."""
    kind = type(value)  # not isinstance: it reads __class__, slow on a HF config
    if id(value) in seen:  # an object shared by many modules (a config): read once
        h.update(f"{name}={seen[id(value)][1]}".encode())
        return
    plain = plain_repr(value)
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
        h.update(f"{name}={type(value).__qualname__}[{len(value)}]".encode())
        items = (sorted(((config_repr(k), v) for k, v in value.items()), key=lambda kv: kv[0])
                 if isinstance(value, dict) else enumerate(value))
        for key, item in items:
            _value(h, f"{name}[{key}]", item, memo, seen, depth + 1)
    else:
        seen[id(value)] = (value, config_repr(value))  # the value is kept alive: ids stay unique
        h.update(f"{name}={seen[id(value)][1]}".encode())


def _module(h, path, module, memo, seen):
    cls = type(module)
    if cls not in seen:  # each class's code is checked once per call
        seen[cls] = f"{cls.__module__}.{cls.__qualname__}:{class_digest(cls, memo.classes)}"
    h.update(f"<{path}:{seen[cls]}>".encode())
    h.update(module.extra_repr().encode())
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
    h.update(_hook_names(module._forward_hooks) + _hook_names(module._forward_pre_hooks))
    for kind, tensors in (("p", module._parameters), ("b", module._buffers)):
        for name, t in tensors.items():
            if t is not None:
                _tensor(h, f"{kind}:{name}", t, memo)


def model_fingerprint(model, memo=None):
    """A hex digest of the model's structure, code, hooks and tensors, or ``None``.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    memo : IdentityMemo, default=None
        Where tensor and class digests are kept between calls (a cache's).

    Returns
    -------
    fingerprint : str or None
        ``None`` when part of the model has no stable identity (a lambda
        attribute, a closure as ``forward``, a lazy parameter).
    """
    memo = IdentityMemo() if memo is None else memo
    optimized = getattr(getattr(torch, "_dynamo", None), "eval_frame", None)
    if isinstance(model, getattr(optimized, "OptimizedModule", ())):
        model = model._orig_mod  # torch.compile: keyed by the eager module it runs
    h = xxhash.xxh3_128(torch.__version__.encode())
    try:
        for attribute in _GLOBAL_HOOKS:
            h.update(_hook_names(getattr(torch.nn.modules.module, attribute, {})))
        seen = {}  # per call: id(object) -> (object kept alive, its name); class -> digest
        for path, module in model.named_modules(remove_duplicate=False):
            _module(h, path, module, memo, seen)
    except Unnameable:
        return None
    return h.hexdigest()
