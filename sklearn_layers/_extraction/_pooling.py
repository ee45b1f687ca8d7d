"""Reduce one captured activation to one feature vector per sample.

Every pooling maps a tensor of shape ``(batch, ...)`` to ``(batch, n_features)``.
Layouts follow PyTorch: 4-D activations are ``(N, C, H, W)`` feature maps, 3-D
activations are ``(N, T, D)`` token sequences (a padding mask of shape ``(N, T)``
may come with them), 2-D activations are already vectors.
"""

import inspect
import numbers

import torch
import torch.nn.functional as F

from ._identity import function_name

POOLING_NAMES = ("auto", "mean", "max", "cls", "last", "flatten")


def _masked_token_mean(a, mask):
    if mask is None:
        return a.mean(dim=1)
    m = mask.to(a.dtype).unsqueeze(-1)
    return (a * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


def _masked_token_max(a, mask):
    if mask is None:
        return a.amax(dim=1)
    fill = torch.finfo(a.dtype).min if a.is_floating_point() else a.min()
    return a.masked_fill(~mask.bool().unsqueeze(-1), fill).amax(dim=1)


def _real_token_index(mask, last):
    """Per row, the index of the first (``last=False``) or last real token.

    Read from the mask, not from the row's length: a left-padded batch starts
    its short rows with padding, a right-padded one ends them with it, and the
    features of a row never depend on the other rows of its batch. A row
    without a real token reads index 0.
    """
    real = mask.to(torch.bool)
    positions = torch.arange(real.shape[1], device=real.device).expand_as(real)
    if last:
        return torch.where(real, positions, -1).amax(dim=1).clamp_min(0)
    first = torch.where(real, positions, real.shape[1]).amin(dim=1)
    return torch.where(first == real.shape[1], 0, first)


def _token(a, mask, last):
    if mask is None:
        return a[:, -1] if last else a[:, 0]
    index = _real_token_index(mask.to(a.device), last)
    return a[torch.arange(a.shape[0], device=a.device), index]


def _needs_tokens(name, a):
    if a.ndim != 3:
        raise ValueError(
            f"pooling={name!r} takes the token axis of a 3-D (batch, tokens, dim) "
            f"activation; this layer produced shape {tuple(a.shape)}. Use 'mean', "
            "'max', 'flatten' or an int for feature maps."
        )


def _spatial_dims(a):
    return tuple(range(2, a.ndim))


def pool(a, pooling, mask=None):
    """Pool one activation.

    Parameters
    ----------
    a : torch.Tensor of shape (batch, ...)
        The activation.
    pooling : str, int or callable
        ``"auto"``, ``"mean"``, ``"max"``, ``"cls"``, ``"last"``, ``"flatten"``,
        an int ``k`` for adaptive ``k x k`` average pooling, or a callable.
    mask : torch.Tensor of shape (batch, tokens), default=None
        Padding mask of a token sequence (1 = real token).

    Returns
    -------
    features : torch.Tensor of shape (batch, n_features)
    """
    if a.ndim == 1:
        a = a.unsqueeze(1)
    if callable(pooling):
        out = _call_user_pooling(pooling, a, mask)
        return out.reshape(out.shape[0], -1)
    if mask is not None and a.ndim == 3 and pooling != "flatten" and a.shape[1] != mask.shape[1]:
        raise ValueError(
            f"This layer's activation has {a.shape[1]} tokens (shape {tuple(a.shape)}) "
            f"where the padding mask has {mask.shape[1]}: the layer adds or drops tokens "
            "(a prepended class or register token, merged tokens), so which of its "
            "tokens are padding is unknown. Pool it with a callable that knows its layout."
        )
    if isinstance(pooling, numbers.Integral):
        out = _adaptive(a, int(pooling), mask)
    elif pooling in ("auto", "mean"):
        if a.ndim == 3:
            out = _masked_token_mean(a, mask)
        elif a.ndim > 3:
            out = a.mean(dim=_spatial_dims(a))
        else:
            out = a
    elif pooling == "max":
        if a.ndim == 3:
            out = _masked_token_max(a, mask)
        elif a.ndim > 3:
            out = a.amax(dim=_spatial_dims(a))
        else:
            out = a
    elif pooling == "cls":
        _needs_tokens(pooling, a)
        out = _token(a, mask, last=False)
    elif pooling == "last":
        _needs_tokens(pooling, a)
        out = _token(a, mask, last=True)
    elif pooling == "flatten":
        out = a
    else:  # validated by the transformer; kept as a guard for direct callers
        raise ValueError(f"Unknown pooling {pooling!r}; expected one of {POOLING_NAMES}.")
    return out.reshape(out.shape[0], -1)


def _adaptive(a, k, mask=None):
    if a.ndim == 4:
        return F.adaptive_avg_pool2d(a, k)
    if a.ndim == 3 and mask is None:
        # (N, T, D) -> k token positions -> (N, k, D)
        return F.adaptive_avg_pool1d(a.transpose(1, 2), k).transpose(1, 2)
    if a.ndim == 3:  # each row's real tokens only: its features never see its batch
        real = mask.to(device=a.device, dtype=torch.bool)
        return torch.stack([
            F.adaptive_avg_pool1d(row[keep].T, k).T if keep.any() else row.new_zeros(k, row.shape[1])
            for row, keep in zip(a, real)
        ])
    if a.ndim == 5:
        return F.adaptive_avg_pool3d(a, k)
    return a


def _call_user_pooling(func, a, mask):
    if _accepts_mask(func):
        out = func(a, mask=mask)
    else:
        out = func(a)
    if not isinstance(out, torch.Tensor):
        out = torch.as_tensor(out)
    if out.ndim == 0 or out.shape[0] != a.shape[0]:
        raise ValueError(
            f"The pooling callable {func!r} must return one row per sample: input "
            f"batch of {a.shape[0]}, output shape {tuple(out.shape)}."
        )
    return out


def _accepts_mask(func):
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "mask" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def pooling_key(pooling):
    """A stable string naming a pooling in cache keys, or None if it has none.

    Names and ints name themselves; a module-level function is named by its
    module, qualified name and code (:func:`._identity.function_name`). Lambdas,
    local functions, ``functools.partial`` objects and callable instances have
    no name that identifies their behaviour, so they get ``None``: their
    features are never cached.
    """
    if not callable(pooling):
        return str(pooling)
    name = function_name(pooling)
    return None if name is None else f"callable:{name}"


def check_pooling(pooling, layer_names):
    """Validate a pooling spec and return a dict ``layer name -> pooling``.

    Parameters
    ----------
    pooling : str, int, callable or dict
        The transformer's ``pooling`` parameter.
    layer_names : list of str
        Resolved layer names.

    Returns
    -------
    per_layer : dict
        One pooling per layer; layers missing from a dict get ``"auto"``.
    """
    if isinstance(pooling, dict):
        unknown = sorted(set(pooling) - set(layer_names))
        if unknown:
            raise ValueError(
                f"pooling names layers that are not extracted: {unknown}. "
                f"Extracted layers: {layer_names}."
            )
        per_layer = {name: pooling.get(name, "auto") for name in layer_names}
    else:
        per_layer = {name: pooling for name in layer_names}
    for name, value in per_layer.items():
        _check_one(value, name)
    return per_layer


def _check_one(value, name):
    if callable(value):
        return
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(
                f"Adaptive pooling size for layer {name!r} must be >= 1, got {value}."
            )
        return
    if isinstance(value, str) and value in POOLING_NAMES:
        return
    raise ValueError(
        f"Unknown pooling {value!r} for layer {name!r}. Expected one of "
        f"{POOLING_NAMES}, an int k (adaptive k x k average), a callable, or a dict "
        "layer -> pooling."
    )
