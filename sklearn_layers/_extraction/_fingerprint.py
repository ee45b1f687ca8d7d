"""A digest identifying everything about a network that can change its outputs.

The activation cache keys every entry by this digest, so two networks share
entries only if the digest covers every difference between them. It covers:

- the module tree: each submodule's path and qualified class;
- each module's configuration: ``extra_repr()`` and its plain attributes
  (numbers, strings, bools, ``None``, tuples, lists and dicts of those, torch
  dtypes and devices), the content of configuration objects with a
  ``to_dict()`` (Hugging Face configs), module-level functions held as
  attributes by their module, name and code (a lambda, closure, function with
  defaults or ``functools.partial`` held that way makes the model uncacheable:
  :func:`model_fingerprint` returns ``None``), and
  the bytes (with dtype and shape) of tensors and numpy arrays held as
  attributes, directly or inside tuples, lists and dicts;
- each module class (up to ``nn.Module``): the code of every method, through
  its decorators (``__wrapped__``), with its default values and the plain
  values its closure holds, and the class attributes holding plain data
  (``SCALE = 2.0``); and the code of a ``forward`` replaced on an instance;
- the forward hooks and pre-hooks on each module and the global ones, by
  their code (:func:`._identity.code_name`: the state a hook captures, such as
  a closure's variables or a callable object's attributes, is not covered);
- every parameter and buffer: name, dtype, shape, device and bytes;
- torch's version.

Tensors on the CPU are hashed on every call (xxh3 reads several GB/s), so an
edit made through ``param.data``, which bypasses autograd's version counter,
is seen. Tensors elsewhere are hashed once and then memoised, per tensor
object, on their storage address and version counter: an edit through
``.data`` on an accelerator is not seen. A module holding a lambda, closure or
partial as a plain attribute has no stable identity: :func:`model_fingerprint`
returns ``None`` and nothing is cached.

What the digest cannot see: the code of functions a forward calls outside the
module classes (torch's kernels are covered by its version; another library's
helpers are not), global variables a forward reads, class attributes other
than functions and plain data (a tensor, an array, a class, an object), and
the state of arbitrary objects held as attributes beyond their type. The
ambient numeric settings (autocast, matmul precisions, the default dtype)
are added by :func:`._plan.cache_identity`.
"""

import threading

import numpy as np
import torch
import xxhash
from torch.utils.weak import WeakIdKeyDictionary

from ._identity import Unnameable, class_digest, code_name, config_repr, plain_repr

_NN_INTERNALS = frozenset(vars(torch.nn.Module())) | {"forward"}
# non-CPU tensor -> (state, digest); by identity: a tensor's == is elementwise
_TENSOR_MEMO = WeakIdKeyDictionary()
_MEMO_LOCK = threading.Lock()

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
)
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_pre_hooks",
)


def is_internal_hook(hook):
    """Whether ``hook`` was installed by this package (and so not part of a model)."""
    return getattr(hook, "_sklearn_layers_internal", False)


def _hook_name(hook):
    if is_internal_hook(hook):
        return None
    name = code_name(hook)
    if name is None:
        raise Unnameable(f"hook {hook!r}")
    return name


def _update_hooks(h, module):
    for attribute in _HOOK_DICTS:
        names = [_hook_name(hook) for hook in getattr(module, attribute).values()]
        h.update(repr([n for n in names if n is not None]).encode())


def _tensor_bytes(h, name, tensor):
    t = tensor.detach()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|{t.device}".encode())
    if not t.numel():
        return
    if _hashed_every_call(t):
        h.update(_as_bytes(t))
        return
    # memoised on the tensor the module holds (a detached view is a new
    # object on every call), until its storage or version counter changes
    state = (t.data_ptr(), t._version, t.dtype, tuple(t.shape), tuple(t.stride()))
    with _MEMO_LOCK:
        memo = _TENSOR_MEMO.get(tensor)
    if memo is None or memo[0] != state:
        inner = xxhash.xxh3_128()
        inner.update(_as_bytes(t.to("cpu")))
        memo = (state, inner.digest())
        with _MEMO_LOCK:
            _TENSOR_MEMO[tensor] = memo
    h.update(memo[1])


def _array_bytes(h, name, a):
    a = np.asarray(a)
    h.update(f"{name}|ndarray|{a.dtype!r}|{a.shape}".encode())
    if a.dtype.hasobject:  # the bytes are addresses: name the objects instead
        h.update(config_repr(a.tolist()).encode())
    else:
        h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _hashed_every_call(t):
    """Whether a tensor is read on every call (on the CPU) rather than memoised."""
    return t.device.type == "cpu"


def _as_bytes(t):
    t = t.contiguous()
    try:
        return t.numpy()  # a buffer over the tensor's own bytes
    except TypeError:  # numpy has no bfloat16 (nor float8): read the bytes
        return t.reshape(-1).view(torch.uint8).numpy()


def _update_value(h, name, value, depth=0):
    """Hash an attribute's value, reading tensors and arrays inside containers.

    Plain data by its repr; tensors, numpy arrays and numpy scalars by dtype,
    shape and bytes, also inside (nested) tuples, lists and dicts; anything
    else by :func:`._identity.config_repr` (an arbitrary object by its type).
    """
    plain = plain_repr(value)
    if plain is not None:
        h.update(f"{name}={plain}".encode())
    elif isinstance(value, torch.Tensor):
        _tensor_bytes(h, name, value)
    elif isinstance(value, (np.ndarray, np.generic)):
        _array_bytes(h, name, value)
    elif isinstance(value, (tuple, list, dict)) and depth < 8:
        h.update(f"{name}={type(value).__qualname__}[{len(value)}]".encode())
        if isinstance(value, dict):
            items = sorted(((config_repr(k), v) for k, v in value.items()),
                           key=lambda item: item[0])
        else:
            items = enumerate(value)
        for key, item in items:
            _update_value(h, f"{name}[{key}]", item, depth + 1)
    else:
        h.update(f"{name}={config_repr(value)}".encode())


def _update_attributes(h, module):
    for attr, value in sorted(vars(module).items()):
        if attr not in _NN_INTERNALS:
            _update_value(h, attr, value)
    override = _forward_override(vars(module).get("forward"))
    if override is not None:
        h.update(f"forward={override}".encode())


def _forward_override(override):
    """The name of a ``forward`` set on the instance, or None for the class's own."""
    # the package's own tap wraps the class forward (or a user's override)
    inner = getattr(override, "sklearn_layers_wrapped", override)
    if inner is None:
        return None
    name = code_name(inner)
    if name is None:
        raise Unnameable(f"instance forward {inner!r}")
    return name


def _structure_and_tensors(model):
    h = xxhash.xxh3_128()
    h.update(torch.__version__.encode())
    for attribute in _GLOBAL_HOOKS:
        hooks = getattr(torch.nn.modules.module, attribute, {})
        h.update(repr([_hook_name(k) for k in hooks.values()]).encode())
    classes = {}  # each class's code is read once per call
    for path, module in model.named_modules(remove_duplicate=False):
        cls = type(module)
        if cls not in classes:
            classes[cls] = f"{cls.__module__}.{cls.__qualname__}:{class_digest(cls)}"
        h.update(f"<{path}:{classes[cls]}>".encode())
        h.update(module.extra_repr().encode())
        _update_attributes(h, module)
        _update_hooks(h, module)
        for name, t in module.named_parameters(recurse=False):
            _tensor_bytes(h, f"p:{name}", t)
        for name, t in module.named_buffers(recurse=False):
            _tensor_bytes(h, f"b:{name}", t)
    return h.hexdigest()


def model_fingerprint(model):
    """Return a hex digest of the model's structure, code, hooks and tensors.

    Parameters
    ----------
    model : torch.nn.Module
        The network.

    Returns
    -------
    fingerprint : str or None
        ``None`` when part of the model has no stable identity (a lambda hook,
        a closure as ``forward``): its features must not be cached.
    """
    try:
        return _structure_and_tensors(model)
    except Unnameable:
        return None
