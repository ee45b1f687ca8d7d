"""Stable names for code, configuration, tokenizers and preprocessing: the same in
every process for the same behaviour (nothing that follows an address or the
string-hash seed is hashed). ``None`` or :class:`Unnameable`: no stable name,
so the caller does not cache."""

import enum
import functools
import inspect
import types

import torch
import xxhash

_PLAIN = (int, float, complex, bool, str, bytes, type(None), slice, range, torch.dtype,
          torch.device, enum.Enum)
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
        code.co_code + repr((code.co_names, code.co_varnames, _const(code.co_consts))).encode())


def _describe(value, strict, leaf=None, depth=0):
    """Plain data by repr, containers item by item (sets sorted: their order follows the
    hash seed; a dict's is its insertion order, which a forward may read); any other
    value by ``leaf``, else (unless ``strict``) as :func:`config_repr` says."""
    kind = type(value)  # not isinstance: it reads __class__, slow on some objects
    if issubclass(kind, _PLAIN):
        return repr(value)
    if depth <= 8 and issubclass(kind, (tuple, list, frozenset, set, dict)):
        item = functools.partial(_describe, strict=strict, leaf=leaf, depth=depth + 1)
        if issubclass(kind, dict):
            return f"{kind.__name__}{{{', '.join(f'{item(k)}: {item(v)}' for k, v in value.items())}}}"
        items = [item(v) for v in value]
        return f"{kind.__name__}({', '.join(sorted(items) if issubclass(kind, (set, frozenset)) else items)})"
    if leaf is not None:
        return leaf(value)
    if strict:
        raise Unnameable(kind.__qualname__)
    if isinstance(value, type):  # a class held as configuration (``act=nn.ReLU``)
        stop = torch.nn.Module if issubclass(value, torch.nn.Module) else object
        return f"class:{value.__module__}.{value.__qualname__}:{class_digest(value, {}, stop)}"
    if inspect.isfunction(value) or isinstance(value, (*_BUILTIN, functools.partial)):
        name = function_name(value)
        if name is None:
            raise Unnameable(repr(value))
        return name
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and depth <= 8:
        try:
            content = to_dict()
        except Exception:  # a foreign object's to_dict may fail in any way
            content = None
        if isinstance(content, dict):
            return f"{kind.__qualname__}{_describe(content, False, None, depth + 1)}"
    return f"object:{kind.__module__}.{kind.__qualname__}"


def plain_repr(value):
    """A repr of plain data (numbers, strings, dtypes, enums, containers of them), else None."""
    try:
        return _describe(value, strict=True)
    except Unnameable:
        return None


def config_repr(value, leaf=None):
    """A repr of a module's configuration: plain data and containers as in
    :func:`plain_repr`; other values by ``leaf(value)`` when given, else objects
    with a ``to_dict()`` (Hugging Face configs) by its content, functions by
    :func:`function_name` (:class:`Unnameable` if it has none), others by type."""
    return _describe(value, strict=False, leaf=leaf)


def function_name(func):
    """A module-level function by name, code and plain defaults; a builtin by name.
    ``None`` for what carries state its code does not show: lambdas, local
    functions, closures, other defaults, partials, callable instances and
    builtins bound to an object (``tensor.add``)."""
    if isinstance(func, _BUILTIN):
        bound = getattr(func, "__self__", None)
        if not (bound is None or isinstance(bound, types.ModuleType)):
            return None
        return f"builtin:{getattr(func, '__module__', None) or ''}.{func.__qualname__}"
    if not inspect.isfunction(func) or "<" in func.__qualname__ or func.__closure__:
        return None
    defaults = plain_repr((func.__defaults__ or (), func.__kwdefaults__ or {}))
    return None if defaults is None else f"{code_name(func)}:{defaults}"


def code_name(obj):
    """A name for a callable's *code*, ignoring the state it carries (hooks):
    functions (lambdas and closures too) and methods by name and code, partials
    with their plain arguments, callable instances by :func:`class_digest`."""
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


def _state(value):
    """Plain data by repr, anything else by its type (a closure cell by its content)."""
    if isinstance(value, types.CellType):
        try:
            value = value.cell_contents
        except ValueError:  # a cell not yet filled
            return "<empty>"
    plain = plain_repr(value)
    return f"<{type(value).__qualname__}>" if plain is None else plain


def class_digest(cls, memo, stop=torch.nn.Module):
    """A digest of the classes of the MRO below ``stop``: each method's code (through
    decorators) with the plain values of its defaults and closure, and plain class
    data (``SCALE = 2.0``). ``memo`` (weak by class) keeps it while those stay."""
    members = []
    for klass in cls.__mro__[: cls.__mro__.index(stop) if stop in cls.__mro__ else -1]:
        for attr, value in sorted(vars(klass).items()):
            functions = _functions(value)
            plain = None if functions or attr.startswith("__") and attr.endswith("__") else plain_repr(value)
            if functions or plain is not None:
                members.append((f"{klass.__qualname__}.{attr}", functions or plain))
    known = memo.get(cls)
    if known is None or known[0] != members:  # functions compare by identity
        h = xxhash.xxh3_64(f"{cls.__module__}.{cls.__qualname__}".encode())
        for name, value in members:
            if not isinstance(value, str):
                value = [(code_digest(f.__code__), [_state(s) for s in (f.__defaults__, f.__kwdefaults__)],
                          [_state(cell) for cell in f.__closure__ or ()]) for f in value]
            h.update(f"{name}={value}".encode())
        memo[cls] = known = (members, h.hexdigest())
    return known[1]


def _vocabulary_digest(tok):
    """A digest of the vocabulary and the options of the tokenizer's model, read on
    every call (about 2 ms for a 30,000-token vocabulary): a vocabulary edited in
    place, or a model of the same size swapped in, is seen."""
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        return xxhash.xxh3_128_hexdigest(backend.model.__getstate__())
    return xxhash.xxh3_128_hexdigest(repr(sorted(tok.get_vocab().items())).encode())


def tokenizer_name(tok, max_length):
    """A name covering all that can change a row's tokens, or ``None``: a Hugging Face
    tokenizer's class, ``init_kwargs``, sides, lengths, the inputs it returns,
    special and added tokens, pipeline components and vocabulary, and
    ``max_length``; a function by :func:`function_name`."""
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
             repr((tok.padding_side, tok.truncation_side, tok.model_max_length,
                   getattr(tok, "split_special_tokens", None), list(tok.model_input_names))),
             repr(sorted(map(str, tok.all_special_tokens))), repr(added),
             _vocabulary_digest(tok), f"max_length={max_length}"]
    backend = getattr(tok, "backend_tokenizer", None)
    for part in ("normalizer", "pre_tokenizer", "post_processor", "decoder") if backend else ():
        component = getattr(backend, part, None)
        parts.append(xxhash.xxh3_64_hexdigest(b"none" if component is None else component.__getstate__()))
    return "|".join(parts)


def preprocess_name(preprocess):
    """A ``preprocess`` by :func:`function_name` or, with a ``to_dict()`` (a Hugging Face
    image processor), by its class's code and a configuration of plain data; else (a
    lambda, a ``Compose``, a callable container) ``None``."""
    name = function_name(preprocess)
    if name is None and callable(getattr(preprocess, "to_dict", None)) \
            and not inspect.isfunction(preprocess):
        try:
            name = config_repr(preprocess)  # its class and to_dict() content
        except Unnameable:
            return None
        if "object:" in name:  # a value named by its type only: state it does not show
            return None
        name += class_digest(type(preprocess), {}, stop=object)
    return None if name is None else f"preprocess|{name}"
