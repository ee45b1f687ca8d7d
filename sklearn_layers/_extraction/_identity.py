"""Stable names for the things a cache key must cover besides tensors.

A cache may serve a value computed in another call, another process or another
session, so every ingredient of its key must name *behaviour*, not an object's
address. This module gives such names to code (functions and the methods of a
class) and to plain configuration values, and says ``None`` when an object has
no name that identifies its behaviour; the callers then do not cache.
"""

import enum
import functools
import inspect
import threading
import types
import weakref

import torch
import xxhash

# A value that cannot be named: callers treat the whole key as unavailable.
UNNAMEABLE = None


class Unnameable(Exception):
    """Part of an object has no stable identity (a lambda, a closure, a partial)."""

_CLASS_MEMO = weakref.WeakKeyDictionary()  # class -> (its members, digest)
_MEMO_LOCK = threading.Lock()


def _update_code(h, code):
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _update_code(h, const)  # nested functions, lambdas, comprehensions
        else:
            h.update(repr(const).encode())


def code_digest(code):
    """A hex digest of a code object: bytecode, names and constants, recursively."""
    h = xxhash.xxh3_64()
    _update_code(h, code)
    return h.hexdigest()


def function_name(func):
    """A name identifying a module-level function's behaviour, or ``None``.

    The name is the function's module and qualified name plus a digest of its
    code, so two different functions never share it and an edited function gets
    a new one. Lambdas, local functions, closures, functions with default
    arguments, ``functools.partial`` objects and callable instances carry state
    that their code does not show: they get ``None``. Builtins are named by
    their module and name.
    """
    if isinstance(func, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        module = getattr(func, "__module__", None) or ""
        return f"builtin:{module}.{func.__qualname__}"
    if not inspect.isfunction(func):
        return UNNAMEABLE
    qualname = func.__qualname__
    if "<" in qualname or func.__closure__ or func.__defaults__ or func.__kwdefaults__:
        return UNNAMEABLE
    return f"function:{func.__module__}.{qualname}:{code_digest(func.__code__)}"


def code_name(obj):
    """A name for a callable's *code*, ignoring the state it carries.

    Functions (lambdas and closures included) are named by their qualified
    name and code, bound methods by their function, callable instances by the
    code of their class, ``functools.partial`` objects by their function and
    plain arguments. Captured variables and instance attributes are not part
    of the name.
    """
    if isinstance(obj, functools.partial):
        inner = code_name(obj.func)
        args = plain_repr(obj.args)
        keywords = plain_repr(obj.keywords)
        if inner is None or args is None or keywords is None:
            return UNNAMEABLE
        return f"partial({inner}, {args}, {keywords})"
    if inspect.ismethod(obj):
        return code_name(obj.__func__)
    if isinstance(obj, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        return function_name(obj)
    if inspect.isfunction(obj):
        return f"function:{obj.__module__}.{obj.__qualname__}:{code_digest(obj.__code__)}"
    if callable(obj):
        cls = type(obj)
        return f"instance:{class_digest(cls, stop=object)}"
    return UNNAMEABLE


def _class_members(cls, stop):
    """The methods and plain data attributes of ``cls`` and its bases below ``stop``.

    Each member is ``(name, value)``: the function as found on the class (a
    decorated one included), or the repr of plain data (:func:`plain_repr`).
    Dunder data (``__module__``, ``__doc__``, ...) and any other attribute (a
    class, a tensor, an arbitrary object) are left out.
    """
    found = []
    for klass in cls.__mro__:
        if klass in (stop, object):
            break
        for attr, value in sorted(vars(klass).items()):
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                value = value.fget
            name = f"{klass.__qualname__}.{attr}"
            if _functions(value):
                found.append((name, value))
            elif not (attr.startswith("__") and attr.endswith("__")):
                plain = plain_repr(value)
                if plain is not None:
                    found.append((name, plain))
    return tuple(found)


def _functions(value):
    """The functions a decorated callable is made of: the wrappers, then the function.

    Follows ``__wrapped__`` (set by ``functools.wraps``, ``@torch.no_grad()``,
    ``functools.lru_cache``) as :func:`inspect.unwrap` does.
    """
    found, seen = [], set()
    while value is not None and id(value) not in seen and len(seen) < 100:
        seen.add(id(value))
        if inspect.isfunction(value):
            found.append(value)
        try:
            value = getattr(value, "__wrapped__", None)
        except Exception:  # an arbitrary object's __getattr__ may fail in any way
            value = None
    return found


def _state_repr(value):
    plain = plain_repr(value)
    return f"<{type(value).__qualname__}>" if plain is None else plain


def _update_function(h, func):
    """Hash a method's code and the plain data it carries, through its decorators.

    Besides each function's code: its default values and the plain values its
    closure holds (a decorator's arguments); other values by their type.
    """
    for f in _functions(func):
        _update_code(h, f.__code__)
        cells = []
        for cell in f.__closure__ or ():
            try:
                cells.append(_state_repr(cell.cell_contents))
            except ValueError:  # a cell not yet filled
                cells.append("<empty>")
        defaults = (_state_repr(f.__defaults__), _state_repr(f.__kwdefaults__))
        h.update(repr((defaults, cells)).encode())


def class_digest(cls, stop=torch.nn.Module):
    """A digest of the code and plain data of a module class.

    Covers every method the classes of the MRO up to ``torch.nn.Module``
    (whose own code is covered by torch's version) define, through their
    decorators (:func:`_update_function`), and their class attributes holding
    plain data (``SCALE = 2.0``). Memoised per class and recomputed when any of
    those functions is replaced (a monkey-patched ``forward``) or any of that
    data changes.
    """
    members = _class_members(cls, stop)
    with _MEMO_LOCK:
        memo = _CLASS_MEMO.get(cls)
    if memo is not None and len(memo[0]) == len(members) and all(
        name_a == name_b and (a is b or (isinstance(a, str) and a == b))
        for (name_a, a), (name_b, b) in zip(memo[0], members)
    ):
        return memo[1]
    h = xxhash.xxh3_64()
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for name, value in members:
        h.update(name.encode())
        if isinstance(value, str):
            h.update(f"={value}".encode())
        else:
            _update_function(h, value)
    digest = h.hexdigest()
    with _MEMO_LOCK:
        _CLASS_MEMO[cls] = (members, digest)
    return digest


_PLAIN = (int, float, complex, bool, str, bytes, type(None), torch.dtype, torch.device)


def plain_repr(value, depth=0):
    """A repr of a configuration value, or ``None`` when it is not plain data.

    Plain data: numbers, strings, bytes, ``None``, torch dtypes and devices,
    enums, and tuples, lists, sets and dicts of those.
    """
    if isinstance(value, _PLAIN) or isinstance(value, enum.Enum):
        return repr(value)
    if depth > 8:
        return None
    if isinstance(value, (tuple, list, frozenset, set)):
        items = [plain_repr(v, depth + 1) for v in value]
        if any(item is None for item in items):
            return None
        if isinstance(value, (set, frozenset)):
            items = sorted(items)
        return f"{type(value).__name__}({', '.join(items)})"
    if isinstance(value, dict):
        items = [(plain_repr(k, depth + 1), plain_repr(v, depth + 1)) for k, v in value.items()]
        if any(k is None or v is None for k, v in items):
            return None
        return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(items)) + "}"
    return None


def config_repr(value, depth=0):
    """A repr of an object that configures a module (such as a model config).

    Plain data is named by :func:`plain_repr`; containers item by item;
    objects with a ``to_dict()`` (Hugging Face configurations) by that content;
    functions by :func:`function_name`; other objects by their type only
    (their state is not covered).

    Raises
    ------
    Unnameable
        For a lambda, closure or ``functools.partial``.
    """
    plain = plain_repr(value)
    if plain is not None:
        return plain
    if depth > 8:
        return f"object:{type(value).__qualname__}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({', '.join(config_repr(v, depth + 1) for v in value)})"
    if isinstance(value, dict):
        items = sorted(
            (config_repr(k, depth + 1), config_repr(v, depth + 1)) for k, v in value.items()
        )
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if (
        inspect.isfunction(value)
        or isinstance(value, types.BuiltinFunctionType)
        or isinstance(value, functools.partial)
    ):
        name = function_name(value)
        if name is None:
            raise Unnameable(repr(value))
        return name
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        try:
            content = to_dict()
        except Exception:  # a foreign object's to_dict may fail in any way
            content = None
        if isinstance(content, dict):
            return f"{type(value).__qualname__}{config_repr(content, depth + 1)}"
    return f"object:{type(value).__module__}.{type(value).__qualname__}"


_TOKENIZER_MEMO = weakref.WeakKeyDictionary()  # tokenizer -> (state, vocabulary digest)
_BACKEND_PARTS = ("normalizer", "pre_tokenizer", "post_processor", "decoder")


def _vocabulary_digest(tok):
    """Digest of a tokenizer's vocabulary, memoised until its size or backend changes."""
    backend = getattr(tok, "backend_tokenizer", None)
    state = (backend, _safe_len(tok))
    with _MEMO_LOCK:
        memo = _TOKENIZER_MEMO.get(tok)
    if memo is not None and memo[0][0] is state[0] and memo[0][1] == state[1]:
        return memo[1]
    h = xxhash.xxh3_128()
    if backend is not None:
        h.update(backend.model.__getstate__())
    else:
        h.update(repr(sorted(tok.get_vocab().items())).encode())
    digest = h.hexdigest()
    with _MEMO_LOCK:
        _TOKENIZER_MEMO[tok] = (state, digest)
    return digest


def _safe_len(obj):
    try:
        return len(obj)
    except TypeError:
        return None


_ADDED_TOKEN_OPTIONS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def _added_tokens(tok):
    """The added tokens with the options that decide how they match text.

    ``get_added_vocab()`` gives only text -> id, while ``single_word``,
    ``lstrip``, ``rstrip``, ``normalized`` and ``special`` change how a string
    is split: the tokens are read from ``added_tokens_decoder``.
    """
    decoder = getattr(tok, "added_tokens_decoder", None)
    if not isinstance(decoder, dict):  # transformers before 4.34
        return repr(sorted(tok.get_added_vocab().items()))
    tokens = [
        (int(i), str(token), *(getattr(token, o, None) for o in _ADDED_TOKEN_OPTIONS))
        for i, token in decoder.items()
    ]
    return repr(sorted(tokens))


def is_hf_tokenizer(tok):
    """Whether ``tok`` looks like a Hugging Face tokenizer."""
    return hasattr(tok, "init_kwargs") and callable(getattr(tok, "get_vocab", None))


def tokenizer_name(tok, max_length):
    """A name covering everything about tokenisation that can change a row's input.

    A Hugging Face tokenizer is named by its class, its ``init_kwargs``, its
    padding and truncation sides, ``model_max_length``, its special tokens, its
    added tokens with their matching options (``single_word``, ``lstrip``,
    ``rstrip``, ``normalized``, ``special``), its normaliser, pre-tokeniser and
    post-processor, a digest of its vocabulary (memoised until its size or
    backend changes) and ``max_length``.
    A module-level function is named by its code (:func:`function_name`).
    Anything else (a ``functools.partial``, a lambda, a callable instance) has
    no stable name: ``None``, and its rows are not cached.
    """
    if not is_hf_tokenizer(tok):
        name = function_name(tok)
        return None if name is None else f"{name}|max_length={max_length}"
    cls = type(tok)
    try:
        init = config_repr(dict(tok.init_kwargs))
    except Unnameable:
        return None
    parts = [
        f"{cls.__module__}.{cls.__qualname__}",
        init,
        repr((tok.padding_side, tok.truncation_side, tok.model_max_length)),
        repr(sorted(map(str, tok.all_special_tokens))),
        _added_tokens(tok),
        _vocabulary_digest(tok),
        f"max_length={max_length}",
    ]
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        for part in _BACKEND_PARTS:
            component = getattr(backend, part, None)
            state = b"none" if component is None else component.__getstate__()
            parts.append(xxhash.xxh3_64_hexdigest(state))
    return "|".join(parts)


def preprocess_name(preprocess):
    """A name for a ``preprocess`` callable, or ``None`` (then nothing is cached).

    A module-level function is named by its code (:func:`function_name`); an
    object with a ``to_dict()`` (a Hugging Face image processor) by its class
    and configuration. Anything else -- a lambda, a ``functools.partial``, a
    torchvision ``Compose`` -- has no name that identifies its behaviour.
    """
    name = function_name(preprocess)
    if name is not None:
        return f"preprocess|{name}"
    if callable(getattr(preprocess, "to_dict", None)) and not inspect.isfunction(preprocess):
        try:
            described = config_repr(preprocess)
        except Unnameable:
            return None
        return None if described.startswith("object:") else f"preprocess|{described}"
    return None
