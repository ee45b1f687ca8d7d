"""A content hash of a network, cheap to recompute when nothing changed.

The hash covers the model's class, its parameter and buffer names, dtypes,
shapes and bytes. It is memoised per model on each tensor's storage address and
autograd version counter, which PyTorch bumps on every in-place change
(``optimizer.step()``, ``load_state_dict``, ``param.add_(...)``), so an edited
weight always yields a new fingerprint. Writes through ``param.data`` bypass the
version counter; :func:`model_fingerprint` with ``recompute=True`` re-hashes.
"""

import hashlib
import threading
import weakref

import torch

_MEMO = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def _tensors(model):
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def _cheap_state(model):
    return tuple(
        (name, t.data_ptr(), t._version, tuple(t.shape), str(t.dtype))
        for name, t in _tensors(model)
    )


def _content_hash(model):
    h = hashlib.blake2b(digest_size=16)
    cls = type(model)
    h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    for name, t in _tensors(model):
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        if t.numel():
            flat = t.to("cpu").contiguous().reshape(-1)
            h.update(flat.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(model, *, recompute=False):
    """Return a hex digest identifying the model's class and weights.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    recompute : bool, default=False
        Ignore the memo and hash the weights again.

    Returns
    -------
    fingerprint : str
    """
    state = _cheap_state(model)
    with _LOCK:
        memo = _MEMO.get(model)
    if memo is not None and memo[0] == state and not recompute:
        return memo[1]
    digest = _content_hash(model)
    with _LOCK:
        _MEMO[model] = (state, digest)
    return digest
