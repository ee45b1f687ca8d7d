"""A digest of everything about a network that can change its outputs.

It covers the module tree (paths and classes), each module's configuration
(``extra_repr()``, plain attributes, ``to_dict()`` configs, tensors and arrays
held as attributes, module-level functions held as attributes by their code), the
code of every module class up to ``nn.Module`` (:func:`._identity.class_digest`)
and of a ``forward`` set on an instance, a TorchScript module's code, the forward
hooks and pre-hooks (by code: :func:`._identity.code_name`), every parameter and
buffer (name, dtype, shape, device, bytes) and torch's version. A lambda,
closure or partial held as an attribute, or a lazy module's uninitialised
parameter, leaves the model without a key: nothing is cached.

Reading every weight on every call would cost close to a forward, so a
tensor's content is hashed once per *state* and kept in an :class:`IdentityMemo`
that lives on the cache (weakly keyed by tensor). The state is the tensor's
data pointer, version counter, dtype, shape, strides and device, and for a CPU
tensor a strided sample of 16 of its values: in-place torch ops,
``load_state_dict``, optimiser steps and a replaced ``.data`` change it. An edit
that bypasses the version counter (through ``.data`` or numpy) is seen when it
changes a sampled value; one that changes no sampled value is not.

What the digest cannot see: functions a forward calls outside the module
classes (beyond torch's kernels, covered by its version), global variables,
class attributes that are not functions or plain data, and the state of
arbitrary objects held as attributes beyond their type. The ambient numeric
settings are added by :func:`._plan.cache_identity`.
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
_HOOKS = ("_forward_hooks", "_forward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks")


class IdentityMemo:
    """What a cache remembers about the models it met: tensor and class digests
    and tokenizer vocabularies (weakly keyed), alias maps per model key, and
    which unkeyable callables were already warned about."""

    def __init__(self):
        self.lock = threading.RLock()
        self.tensors = WeakIdKeyDictionary()  # by identity: a tensor's == is elementwise
        self.classes = weakref.WeakKeyDictionary()
        self.tokenizers = weakref.WeakKeyDictionary()
        self.aliases = {}  # model key -> (name -> canonical, complete)
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
        state += (flat[:: max(1, flat.numel() // 16)].tolist(),)
    with memo.lock:
        known = memo.tensors.get(tensor)
    if known is None or known[0] != state:
        known = (state, xxhash.xxh3_128_digest(_as_bytes(t.cpu())))
        with memo.lock:
            memo.tensors[tensor] = known
    h.update(known[1])


def _value(h, name, value, memo, depth=0):
    """Hash an attribute: plain data by repr, tensors and arrays by bytes (inside
    tuples, lists and dicts too), anything else by :func:`config_repr`."""
    plain = plain_repr(value)
    if plain is not None:
        h.update(f"{name}={plain}".encode())
    elif isinstance(value, torch.Tensor):
        _tensor(h, name, value, memo)
    elif isinstance(value, (np.ndarray, np.generic)):
        a = np.asarray(value)
        h.update(f"{name}|ndarray|{a.dtype!r}|{a.shape}".encode())
        # object arrays hold addresses: name the objects instead
        h.update(config_repr(a.tolist()).encode() if a.dtype.hasobject
                 else np.ascontiguousarray(a).reshape(-1).view(np.uint8))
    elif isinstance(value, (tuple, list, dict)) and depth < 8:
        h.update(f"{name}={type(value).__qualname__}[{len(value)}]".encode())
        items = (sorted(((config_repr(k), v) for k, v in value.items()), key=lambda kv: kv[0])
                 if isinstance(value, dict) else enumerate(value))
        for key, item in items:
            _value(h, f"{name}[{key}]", item, memo, depth + 1)
    else:
        h.update(f"{name}={config_repr(value)}".encode())


def _module(h, path, module, memo):
    cls = type(module)
    h.update(f"<{path}:{cls.__module__}.{cls.__qualname__}:{class_digest(cls, memo.classes)}>".encode())
    h.update(module.extra_repr().encode())
    if isinstance(module, torch.jit.ScriptModule):  # its code and attributes, no addresses
        h.update(re.sub(r" at 0x[0-9a-fA-F]+", "", module._c.dump_to_str(True, True, False)).encode())
    for attr, value in sorted(vars(module).items()):
        if attr not in _NN_INTERNALS:
            _value(h, attr, value, memo)
    override = vars(module).get("forward")
    override = getattr(override, "sklearn_layers_wrapped", override)  # under the package's tap
    if override is not None:
        name = code_name(override)
        if name is None:
            raise Unnameable(f"instance forward {override!r}")
        h.update(f"forward={name}".encode())
    for attribute in _HOOKS:
        h.update(_hook_names(getattr(module, attribute)))
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
        for path, module in model.named_modules(remove_duplicate=False):
            _module(h, path, module, memo)
    except Unnameable:
        return None
    return h.hexdigest()
