"""How far apart two float32 computations of the same features can be.

Extraction gives the same features for a row whatever the batch it runs in, up
to rounding: another batch composition (a cache hit computed earlier in another
batch, ``batch_size``, one row alone) makes GEMM and convolution kernels block
their sums differently, and float32 addition is not associative. These helpers
turn that into tolerances derived from the arithmetic, scaled by each feature's
own magnitude, instead of a guessed ``rtol``/``atol``.

Sequential networks of linear layers, convolutions, ReLU and pooling get a
rigorous componentwise bound (:func:`feature_error_bound`); transformer
encoders, whose attention has no simple magnitude twin, get the probabilistic
bound of Higham & Mary (:func:`transformer_rtol`).
"""

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

U = 2.0**-24  # unit roundoff of float32
# with flush-to-zero a product loses at most the smallest normal float32
TINY = float(np.finfo(np.float32).tiny)


def gamma(n, dtype=np.float32):
    """Higham's gamma_n = n u / (1 - n u): the relative error of an n-term sum."""
    u = float(np.finfo(dtype).eps) / 2
    return n * u / (1 - n * u)


def cosine_error(n_features, dtype=np.float64):
    """Bound on the error of a computed cosine similarity, in any order.

    Centring (one rounding per entry), a norm (n + 1 roundings with the square
    root), one division per entry and a dot product of n terms of two unit
    vectors (|q|.|t| <= 1): within gamma(3 n + 8) of the exact cosine.
    """
    return gamma(3 * n_features + 8, dtype)


def euclidean_error(Q, T, distances, dtype=np.float64):
    """Bound on the error of Euclidean distances from queries ``Q`` to ``T``.

    The worst route is the expansion |q|^2 - 2 q.t + |t|^2, whose squared
    distance is within gamma(n + 2) (|q| + |t|)^2 of exact (a direct sum of
    squared differences is more accurate). A square root maps an error e of
    a squared distance D^2 to at most min(sqrt(e), e / D). ``distances``
    (n_queries, k) are computed distances to neighbours of the rows of ``Q``.
    """
    Q, T = np.asarray(Q, np.float64), np.asarray(T, np.float64)
    q = np.linalg.norm(Q, axis=1)[:, None]
    t = np.linalg.norm(T, axis=1).max()
    e = gamma(Q.shape[1] + 2, dtype) * (q + t) ** 2
    with np.errstate(divide="ignore"):
        return np.minimum(np.sqrt(e), e / np.abs(distances))


def _affine(M, E, weight, bias, apply):
    """Bounds after ``apply(x, W) + b`` with fan-in ``n`` per output.

    A computed dot product of n terms, in any order (blocked, FMA, threads),
    is within gamma(n) * |w|.|x| of the exact one (Higham, *Accuracy and
    Stability of Numerical Algorithms*, 2nd ed., eq. 3.5). With x known to
    within E: |fl(W x^ + b) - (W x + b)| <= (1 + g)|W| E + g M_out (+ n TINY
    for products flushed to zero), where M_out = |W| M + |b| bounds the
    exact output's magnitude.
    """
    n = weight[0].numel() + (bias is not None)
    g = gamma(n)
    absw = weight.abs().double()
    absb = None if bias is None else bias.abs().double()
    M_out = apply(M, absw, absb)
    E_out = (1 + g) * apply(E, absw, None) + g * M_out + n * TINY
    return M_out, E_out


def _step(module, M, E):
    if isinstance(module, nn.Linear):
        return _affine(M, E, module.weight, module.bias, F.linear)
    if isinstance(module, nn.Conv2d):
        assert module.padding_mode == "zeros"

        def conv(x, w, b):
            return F.conv2d(
                x, w, b, module.stride, module.padding, module.dilation, module.groups
            )

        return _affine(M, E, module.weight, module.bias, conv)
    if isinstance(module, (nn.ReLU, nn.Identity, nn.Dropout)):
        return M, E  # 1-Lipschitz, |f(z)| <= |z|, exact in float32
    if isinstance(module, nn.Flatten):
        return M.flatten(module.start_dim), E.flatten(module.start_dim)
    if isinstance(module, nn.MaxPool2d):
        # |max(a) - max(b)| <= max|a - b|: the error of a max is the max error
        pool = nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
        return pool(M), pool(E)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _average(M, E, lambda t: F.adaptive_avg_pool2d(t, module.output_size))
    raise NotImplementedError(f"no rounding bound for {type(module).__name__}")


def _average(M, E, average, n=None):
    """Bounds after averaging n values: a sum of n terms, then one division."""
    n = n or M.shape[-1] * M.shape[-2]
    g = gamma(n)
    M_out = average(M)
    return M_out, (1 + g) * average(E) + g * M_out


def _pool(M, E, pooling):
    if callable(pooling):  # a function that picks values: bounds picked alike
        return pooling(M).flatten(1), pooling(E).flatten(1)
    if M.ndim == 2 or pooling == "flatten":
        return M.flatten(1), E.flatten(1)
    if M.ndim == 3:  # tokens (N, T, D)
        if pooling in ("auto", "mean"):
            return _average(M, E, lambda t: t.mean(dim=1), n=M.shape[1])
        if pooling in ("cls", "last"):
            i = 0 if pooling == "cls" else -1
            return M[:, i], E[:, i]
    if pooling in ("auto", "mean"):
        return _average(M, E, lambda t: t.mean(dim=(2, 3)))
    if pooling == "max":
        return M.amax(dim=(2, 3)), E.amax(dim=(2, 3))
    if isinstance(pooling, int):
        M, E = _average(M, E, lambda t: F.adaptive_avg_pool2d(t, pooling))
        return M.flatten(1), E.flatten(1)
    raise NotImplementedError(f"no rounding bound for pooling={pooling!r}")


def feature_error_bound(net, X, layers, pooling="auto"):
    """Componentwise bound on the rounding error of a transformer's features.

    Parameters
    ----------
    net : nn.Sequential
        Top-level children among Linear, Conv2d, ReLU, MaxPool2d,
        AdaptiveAvgPool2d, Flatten.
    X : array-like
        The rows, as passed to the transformer (rounded to float32 first, as
        the transformer does; both computations start from the same floats).
    layers : list of str
        Child names, or ``"<child>:input"`` (``lft.layer_names_``), in the
        transformer's column order.
    pooling : str or int
        The transformer's pooling of every layer.

    Returns
    -------
    bound : ndarray of shape (n_samples, n_features)
        Each float32 computation of the features lies within ``bound`` of
        the exact features, so two of them differ by at most ``2 * bound``.
    """
    M = torch.as_tensor(np.asarray(X, dtype=np.float32)).double().abs()
    E = torch.zeros_like(M)
    found = {}
    with torch.no_grad():
        for name, child in net.named_children():
            if f"{name}:input" in layers:
                found[f"{name}:input"] = _pool(M, E, pooling)[1]
            M, E = _step(child, M, E)
            if name in layers:
                found[name] = _pool(M, E, pooling)[1]
            if len(found) == len(layers):
                break
    missing = set(layers) - set(found)
    assert not missing, f"layers {missing} are not top-level children of the net"
    return np.hstack([found[name].numpy() for name in layers])


class _AbsAffine(nn.Module):
    """|scale| x + |scale| |mean| + |shift|: the magnitude twin of an eval BatchNorm."""

    def __init__(self, norm):
        super().__init__()
        scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
        shape = (1, -1) + (1,) * (2 if isinstance(norm, nn.BatchNorm2d) else 0)
        self.scale = scale.abs().reshape(shape)
        self.shift = (scale.abs() * norm.running_mean.double().abs()
                      + norm.bias.double().abs()).reshape(shape)

    def forward(self, x):
        return self.scale * x + self.shift


def _magnitude_twin(net):
    twin = copy.deepcopy(net).double().eval()
    for name, module in list(twin.named_modules()):
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            parent, _, child = name.rpartition(".")
            setattr(twin.get_submodule(parent) if parent else twin, child,
                    _AbsAffine(module))
    with torch.no_grad():
        for t in list(twin.parameters()) + list(twin.buffers()):
            if t.is_floating_point():
                t.abs_()
    return twin


def _roundings(net):
    """Roundings along any path through ``net``: fan-ins of its products, and
    eight elementwise operations per module (bias, scale, shift, activation,
    the arithmetic of a custom forward)."""
    n = 0
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            n += module.weight[0].numel() + 1
        n += 8
    return n


def twin_error_bound(net, X, layers, pooling="auto"):
    """Bound on the rounding error of features of any network of linear maps,
    convolutions, eval BatchNorm, ReLU/tanh, max and mean pooling, sums and
    products with parameters (no subtraction of activations, no division by
    them).

    The magnitude twin runs the network with every parameter and buffer
    replaced by its absolute value on |X|, in float64 (BatchNorm becomes
    |s| x + |s| |mean| + |beta|): its outputs M bound the magnitude of every
    term summed on the way. Each rounding, of relative size u on a term of
    magnitude m, moves an output by at most u times what the twin makes of
    m, so an output is within gamma(n) M of exact, n the roundings on its
    longest path (bounded by :func:`_roundings` over the whole network), plus
    gamma(k) more for a mean over k positions.
    """
    twin = _magnitude_twin(net)
    found, hooks = {}, []
    for name in layers:
        if name == "output":
            continue
        module_name, _, where = name.partition(":")
        module = twin.get_submodule(module_name)
        # clones: a later in-place operation must not reach what was found;
        # a module called twice is found at its first call, as extraction does
        if where == "input":
            hooks.append(module.register_forward_pre_hook(
                lambda m, args, name=name: found.setdefault(name, args[0].clone())))
        else:
            hooks.append(module.register_forward_hook(
                lambda m, args, out, name=name: found.setdefault(
                    name, (out[0] if isinstance(out, tuple) else out).clone())))
    if isinstance(X, dict):
        inputs = {k: torch.as_tensor(np.asarray(v, np.float32)).double().abs()
                  for k, v in X.items()}
    else:
        inputs = torch.as_tensor(np.asarray(X, dtype=np.float32)).double().abs()
    try:
        with torch.no_grad():
            out = twin(**inputs) if isinstance(inputs, dict) else twin(inputs)
            found["output"] = out
    finally:
        for hook in hooks:
            hook.remove()
    n = _roundings(net)
    bounds = []
    for name in layers:
        M = found[name]
        k = 1
        if pooling in ("auto", "mean") and M.ndim in (3, 4):
            k = M[0, 0].numel() if M.ndim == 4 else M.shape[1]
        M = _pool(M, torch.zeros_like(M), pooling)[0]
        bounds.append((gamma(n + k) * M).numpy())
    return np.hstack(bounds)


def same_features_of_any(net, X, layers, got, expected, pooling="auto"):
    """Assert two float32 extractions agree, for networks beyond ``nn.Sequential``."""
    assert_float32_close(got, expected, twin_error_bound(net, X, layers, pooling))


def assert_float32_close(got, expected, bound):
    """``|got - expected| <= 2 * bound``: both are float32 computations."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape == bound.shape
    excess = np.abs(got - expected) - 2 * bound
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert (excess <= 0).all(), (
        f"features differ by {abs(got - expected)[worst]:.3g} at {worst}, beyond "
        f"the float32 rounding bound {2 * bound[worst]:.3g}"
    )


def same_features(net, X, layers, got, expected, pooling="auto"):
    """Assert two float32 extractions of ``layers`` from ``net`` agree."""
    assert_float32_close(got, expected, feature_error_bound(net, X, layers, pooling))


def transformer_rtol(d_model, d_ff, n_layers, seq_len, n_heads, lam=6.0):
    """Normwise relative tolerance between two float32 runs of an encoder.

    Probabilistic rounding error analysis (Higham & Mary, SIAM J. Sci.
    Comput. 41(5), 2019, Thm. 2.4): a dot product of n terms has a relative
    error below lam * sqrt(n) * u with probability at least
    1 - 2 exp(-lam**2 / 2) (below 3e-8 for lam = 6), for any summation order.
    An encoder layer chains the Q, K, V and output projections (n = d_model),
    the attention scores (n = d_model / n_heads), the weighted sum of values
    (n = seq_len) and two feed-forward products (n = d_model, then d_ff);
    layer norm, softmax and the activation add a few u each. Residual
    connections and layer norm keep each block's gain on incoming errors near
    one, so the relative errors add along the layers; two runs differ by
    twice that, relative to the size of the features of the row.
    """
    fan_ins = [d_model] * 4 + [d_model // n_heads, seq_len, d_model, d_ff]
    per_layer = sum(lam * math.sqrt(n) * U for n in fan_ins) + 10 * U
    return 2 * n_layers * per_layer


def assert_rows_close(got, expected, rtol):
    """``max|got_i - expected_i| <= rtol * max|expected_i|`` for every row i."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    scale = np.abs(expected).max(axis=1)
    diff = np.abs(got - expected).max(axis=1)
    assert (diff <= rtol * scale).all(), (
        f"rows differ by up to {(diff / scale).max():.3g} of their size, beyond "
        f"the float32 tolerance {rtol:.3g}"
    )
