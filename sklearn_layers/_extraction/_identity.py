"""Stable names for what a cache key covers besides tensors: code and configuration.

A cache may serve a value computed in another process, so every name here is
the same in every process for the same behaviour: nothing whose bytes depend on
an address or on the string-hash seed (``PYTHONHASHSEED``) is hashed -- set
constants in bytecode are sorted, arbitrary objects are named by their type.
``None`` means "no stable name": the caller then does not cache.
"""

import enum
import functools
import inspect
import types

import torch
import xxhash

_PLAIN = (int, float, complex, bool, str, bytes, type(None), torch.dtype, torch.device, enum.Enum)
_BUILTIN = (types.BuiltinFunctionType, types.BuiltinMethodType)


class Unnameable(Exception):
    """Part of an object has no stable identity (a lambda, a closure, a partial)."""


def _const(value):
    # a set literal in a membership test compiles to a frozenset constant whose
    # iteration order follows the per-process string hash: sort it
    if isinstance(value, types.CodeType):
        return code_digest(value)
    if isinstance(value, (frozenset, tuple)):
        items = [_const(v) for v in value]
        return f"{type(value).__name__}({','.join(sorted(items) if isinstance(value, frozenset) else items)})"
    return repr(value)


def code_digest(code):
    """A digest of a code object: bytecode, names and constants, nested code included."""
    return xxhash.xxh3_64_hexdigest(
        code.co_code + repr((code.co_names, code.co_varnames, _const(code.co_consts))).encode()
    )


def _describe(value, strict, depth=0):
    """Plain data by repr (sets and dicts sorted); other objects, unless ``strict``,
    by ``to_dict()`` content, :func:`function_name` or type (see :func:`config_repr`)."""
    kind = type(value)  # not isinstance: it reads __class__, slow on some objects
    if issubclass(kind, _PLAIN):
        return repr(value)
    if depth <= 8 and issubclass(kind, (tuple, list, frozenset, set, dict)):
        if issubclass(kind, dict):
            items = [(_describe(k, strict, depth + 1), _describe(v, strict, depth + 1))
                     for k, v in value.items()]
            return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(items)) + "}"
        items = [_describe(v, strict, depth + 1) for v in value]
        return f"{kind.__name__}({', '.join(sorted(items) if issubclass(kind, (set, frozenset)) else items)})"
    if strict:
        raise Unnameable(kind.__qualname__)
    if inspect.isfunction(value) or isinstance(value, (*_BUILTIN, functools.partial)):
        name = function_name(value)
        if name is None:
            raise Unnameable(repr(value))
        return name
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type) and depth <= 8:
        try:
            content = to_dict()
        except Exception:  # a foreign object's to_dict may fail in any way
            content = None
        if isinstance(content, dict):
            return f"{kind.__qualname__}{_describe(content, False, depth + 1)}"
    return f"object:{kind.__module__}.{kind.__qualname__}"


def plain_repr(value):
    """A repr of plain data (numbers, strings, bytes, ``None``, dtypes, devices,
    enums and tuples, lists, sets and dicts of those), else ``None``."""
    try:
        return _describe(value, strict=True)
    except Unnameable:
        return None


def config_repr(value):
    """A repr of an object configuring a module (a model config, say).

    Plain data by :func:`plain_repr`; containers item by item; objects with a
    ``to_dict()`` (Hugging Face configs) by that content; functions by
    :func:`function_name`; other objects by their type only.

    Raises
    ------
    Unnameable
        For a lambda, closure or ``functools.partial``.
    """
    return _describe(value, strict=False)


def function_name(func):
    """A name for a module-level function's behaviour, or ``None``.

    Module, qualified name, code and the default arguments when they are plain
    data (``padding=True``). Lambdas, local functions, closures, defaults that
    are not plain data, ``functools.partial`` objects and callable instances
    carry state their code does not show: ``None``. Builtins by module and name.
    """
    if isinstance(func, _BUILTIN):
        return f"builtin:{getattr(func, '__module__', None) or ''}.{func.__qualname__}"
    if not inspect.isfunction(func) or "<" in func.__qualname__ or func.__closure__:
        return None
    defaults = plain_repr((func.__defaults__ or (), func.__kwdefaults__ or {}))
    code = code_digest(func.__code__)
    return None if defaults is None else f"function:{func.__module__}.{func.__qualname__}:{code}:{defaults}"


def code_name(obj):
    """A name for a callable's *code*, ignoring the state it carries (hooks).

    Functions (lambdas and closures included) by qualified name and code, bound
    methods by their function, callable instances by their class's code,
    partials by their function and plain arguments.
    """
    if isinstance(obj, functools.partial):
        inner, args = code_name(obj.func), plain_repr((obj.args, obj.keywords))
        return None if inner is None or args is None else f"partial({inner}, {args})"
    if inspect.ismethod(obj):
        return code_name(obj.__func__)
    if inspect.isfunction(obj):
        return f"function:{obj.__module__}.{obj.__qualname__}:{code_digest(obj.__code__)}"
    if isinstance(obj, _BUILTIN):
        return function_name(obj)
    return f"instance:{class_digest(type(obj), {}, stop=object)}" if callable(obj) else None


def _functions(value):
    """The functions a decorated callable is made of (through ``__wrapped__``)."""
    found, seen = [], set()
    while value is not None and id(value) not in seen and len(seen) < 100:
        seen.add(id(value))
        try:  # staticmethod, classmethod, property, then through decorators
            value = getattr(value, "__func__", None) or getattr(value, "fget", None) or value
            found += [value] if inspect.isfunction(value) else []
            value = getattr(value, "__wrapped__", None)
        except Exception:  # an arbitrary object's __getattr__ may fail in any way
            value = None
    return tuple(found)


def class_digest(cls, memo, stop=torch.nn.Module):
    """A digest of a class's methods (through decorators) and plain class data.

    For each class of the MRO below ``stop``: each method's code, defaults and
    the plain values its closure holds (a decorator's arguments), and class
    attributes holding plain data (``SCALE = 2.0``). ``nn.Module``'s own code
    is covered by torch's version. ``memo`` (a dict, weakly keyed by class)
    keeps the digest until a method is replaced or a plain value changes.
    """
    members = []
    for klass in cls.__mro__[: cls.__mro__.index(stop) if stop in cls.__mro__ else -1]:
        for attr, value in sorted(vars(klass).items()):
            functions = _functions(value)
            plain = None if functions or attr.startswith("__") and attr.endswith("__") else plain_repr(value)
            if functions or plain is not None:
                members.append((f"{klass.__qualname__}.{attr}", functions or plain))
    known = memo.get(cls)
    if known is not None and known[0] == members:  # functions compare by identity
        return known[1]
    h = xxhash.xxh3_64(f"{cls.__module__}.{cls.__qualname__}".encode())
    for name, value in members:
        h.update(f"{name}={value}".encode() if isinstance(value, str) else name.encode())
        for f in () if isinstance(value, str) else value:
            cells = [_state(cell) for cell in f.__closure__ or ()]
            state = [_state(s) for s in (f.__defaults__, f.__kwdefaults__)]
            h.update(f"{code_digest(f.__code__)}{state}{cells}".encode())
    memo[cls] = (members, h.hexdigest())
    return memo[cls][1]


def _state(value):
    """Plain data by repr, anything else by its type (a closure cell by its content)."""
    if isinstance(value, types.CellType):
        try:
            value = value.cell_contents
        except ValueError:  # a cell not yet filled
            return "<empty>"
    plain = plain_repr(value)
    return f"<{type(value).__qualname__}>" if plain is None else plain


def _vocabulary_digest(tok, memo):
    """A digest of the vocabulary, kept in ``memo`` until its size or backend changes."""
    backend = getattr(tok, "backend_tokenizer", None)
    state = (id(backend), len(tok) if hasattr(tok, "__len__") else None)
    known = memo.get(tok) if memo is not None else None
    if known is None or known[0] != state:
        vocab = backend.model.__getstate__() if backend is not None else repr(sorted(tok.get_vocab().items())).encode()
        known = (state, xxhash.xxh3_128_hexdigest(vocab), backend)  # backend kept: its id stays unique
        if memo is not None:
            memo[tok] = known
    return known[1]


def tokenizer_name(tok, max_length, memo=None):
    """A name covering everything about tokenisation that can change a row's input.

    A Hugging Face tokenizer: its class, ``init_kwargs``, padding and truncation
    sides, ``model_max_length``, special tokens, added tokens with the options
    that decide how they match, its normaliser, pre-tokeniser, post-processor
    and decoder, a digest of its vocabulary (kept in ``memo``, a weak dict,
    until its size or backend changes) and ``max_length``. A function by
    :func:`function_name`. Anything else (a partial, a lambda, a callable
    instance): ``None``, and rows are not cached.
    """
    if not (hasattr(tok, "init_kwargs") and callable(getattr(tok, "get_vocab", None))):
        name = function_name(tok)
        return None if name is None else f"{name}|max_length={max_length}"
    try:
        init = config_repr(dict(tok.init_kwargs))
    except Unnameable:
        return None
    decoder = getattr(tok, "added_tokens_decoder", None)
    options = ("single_word", "lstrip", "rstrip", "normalized", "special")
    added = sorted((int(i), str(t), *(getattr(t, o, None) for o in options))
                   for i, t in decoder.items()) if isinstance(decoder, dict) else sorted(tok.get_added_vocab().items())
    parts = [f"{type(tok).__module__}.{type(tok).__qualname__}", init,
             repr((tok.padding_side, tok.truncation_side, tok.model_max_length)),
             repr(sorted(map(str, tok.all_special_tokens))), repr(added),
             _vocabulary_digest(tok, memo), f"max_length={max_length}"]
    backend = getattr(tok, "backend_tokenizer", None)
    for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder") if backend else ():
        component = getattr(backend, part, None)
        parts.append(xxhash.xxh3_64_hexdigest(b"none" if component is None else component.__getstate__()))
    return "|".join(parts)


def preprocess_name(preprocess):
    """A name for a ``preprocess`` callable, or ``None`` (then nothing is cached).

    A module-level function by :func:`function_name`; an object with a
    ``to_dict()`` (a Hugging Face image processor) by its class and
    configuration. A lambda, a partial, a torchvision ``Compose``: ``None``.
    """
    name = function_name(preprocess)
    if name is None and callable(getattr(preprocess, "to_dict", None)) and not inspect.isfunction(preprocess):
        try:
            name = config_repr(preprocess)
        except Unnameable:
            return None
        name = None if name.startswith("object:") else name
    return None if name is None else f"preprocess|{name}"
