"""precision: the forward under autocast, keyed apart in the cache, the drift report."""

import warnings

import numpy as np
import pytest
import torch

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers._extraction import _fingerprint, _precision
from sklearn_layers._extraction._precision import native, row_cosines

ROWS_COMPUTED = []


class CountingMLP(torch.nn.Module):
    """An MLP counting the rows its forward receives (no hook: hooks join the key)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU()
        )
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        ROWS_COMPUTED.append(x.shape[0])
        return self.head(self.body(x))


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)


@pytest.fixture
def native_everywhere(monkeypatch):
    monkeypatch.setattr(_precision, "native", lambda precision, device: True)


def reference(net, X, dtype):
    """The body's output computed by hand under autocast, as float32."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        return net.body(torch.as_tensor(X)).float().numpy()


def lft(net, precision, cache=None):
    return LayerFeatureTransformer(net, layers="body", precision=precision, cache=cache)


@pytest.mark.parametrize("precision, dtype", [("bfloat16", torch.bfloat16),
                                              ("float16", torch.float16)])
def test_the_forward_runs_under_autocast_and_features_are_float32(
    X, precision, dtype, native_everywhere
):
    net = CountingMLP()
    out = lft(net, precision).fit(X).transform(X)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, reference(net, X, dtype))
    full = lft(net, "float32").fit(X).transform(X)
    assert not np.array_equal(out, full)  # 16 bits round: the setting took effect


def test_the_cache_keeps_each_precision_apart(X, native_everywhere):
    net, cache = CountingMLP(), MemoryCache()
    full = lft(net, "float32", cache).fit(X).transform(X)
    ROWS_COMPUTED.clear()
    low = lft(net, "bfloat16", cache).fit(X)
    served = low.transform(X)
    assert sum(ROWS_COMPUTED) == len(X)  # float32 entries were not served
    np.testing.assert_array_equal(served, reference(net, X, torch.bfloat16))
    ROWS_COMPUTED.clear()
    np.testing.assert_array_equal(low.transform(X), served)
    assert sum(ROWS_COMPUTED) == 0  # its own entries are
    np.testing.assert_array_equal(lft(net, "float32", cache).fit(X).transform(X), full)


def test_the_key_names_the_precision_whatever_the_identity_reads(
    X, native_everywhere, monkeypatch
):
    # the model's identity also reads the ambient autocast; the layer key
    # names the precision on its own, so an identity blind to it still keeps
    # the entries apart
    monkeypatch.setattr(_fingerprint, "numeric_settings", lambda device: "blind")
    net, cache = CountingMLP(), MemoryCache()
    lft(net, "float32", cache).fit(X).transform(X)
    served = lft(net, "bfloat16", cache).fit(X).transform(X)
    np.testing.assert_array_equal(served, reference(net, X, torch.bfloat16))


@pytest.mark.parametrize("is_native", [True, False])
def test_emulated_precision_warns_and_still_computes_what_was_asked(
    X, monkeypatch, is_native
):
    monkeypatch.setattr(_precision, "native", lambda precision, device: is_native)
    net = CountingMLP()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = lft(net, "bfloat16").fit(X).transform(X)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if is_native:
        assert messages == []
    else:
        assert len(messages) == 2  # at fit and at transform
        assert all("emulated" in m and "precision='float32'" in m for m in messages)
    np.testing.assert_array_equal(out, reference(net, X, torch.bfloat16))


@pytest.mark.parametrize(
    "flags, expected",
    [
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, False),
        ({"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, True),
        ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, True),
        ({"_is_avx512_bf16_supported": False}, None),  # a torch without the AMX helper
    ],
)
def test_native_bfloat16_on_the_cpu_reads_torchs_cpu_flags(monkeypatch, flags, expected):
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        if name in flags:
            monkeypatch.setattr(torch.cpu, name, lambda value=flags[name]: value, raising=False)
        else:
            monkeypatch.delattr(torch.cpu, name, raising=False)
    assert native("bfloat16", torch.device("cpu")) is expected
    assert native("float32", torch.device("cpu")) is True


def test_precision_drift_is_the_row_cosine_to_float32_and_leaves_the_cache_alone(
    X, native_everywhere
):
    net, cache = CountingMLP(), MemoryCache()
    low = lft(net, "bfloat16", cache).fit(X)
    entries = len(cache)
    drift = low.precision_drift(X)
    assert len(cache) == entries
    a, b = reference(net, X, torch.bfloat16), lft(net, "float32").fit(X).transform(X)
    by_hand = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))
    assert list(drift) == ["body"]
    np.testing.assert_allclose(drift["body"], by_hand, rtol=1e-6)
    assert 0.99 < drift["body"].min() < 1.0
    same = lft(net, "float32").fit(X).precision_drift(X)
    np.testing.assert_array_equal(same["body"], np.ones(len(X)))


def test_row_cosines_of_zero_rows():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    np.testing.assert_allclose(row_cosines(a, b), [1.0, 0.0, 0.0, 1.0])


def test_an_unknown_precision_is_rejected(X):
    with pytest.raises(ValueError, match="precision"):
        lft(CountingMLP(), "int8").fit(X)
