"""A model's cache identity for one call, or None when nothing may be cached."""

import warnings

from ._fingerprint import memo_of, model_fingerprint
from ._pooling import pooling_key
from ._settings import numeric_settings


def cache_identity(model, poolings, *, cache, cacheable, device, float_dtype, adapter=None):
    """The model's cache key for this call, or None when nothing may be cached.

    The key is the model's fingerprint (:func:`._fingerprint.model_fingerprint`,
    its tensor digests kept on the cache), the floating dtype it runs in, the
    device type and the ambient numeric settings (:func:`._settings.numeric_settings`:
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


def _short_name(found):
    name = getattr(found, "__qualname__", None)
    if isinstance(name, str):
        return f"{getattr(found, '__module__', None) or ''}.{name}"
    text = repr(found)
    return text if len(text) <= 100 else f"{text[:97]}..."


def _warn_unkeyable(memo, what, found):
    label = (f"{type(found).__name__} (it holds a lambda, a closure or a partial as an "
             "attribute, a hook or its forward, or a lazy parameter)" if what == "model"
             else _short_name(found))
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
