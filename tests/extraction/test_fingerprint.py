"""The model identity: everything that can change a network's outputs is in its key."""

import copy
import functools

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from torch import nn

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers._extraction._fingerprint import model_fingerprint
from sklearn_layers.utils.toy import make_mlp

from _float32 import same_features, same_features_of_any


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)


def features(net, X, cache, layers="output"):
    return LayerFeatureTransformer(net, layers=layers, cache=cache).fit_transform(X)


def uncached(net, X, layers="output"):
    return features(net, X, None, layers)


def assert_served_like_uncached(a, b, X, layers="output"):
    """Both nets through one cache give each net's own uncached features."""
    cache = MemoryCache()
    for net in (a, b, a, b):
        got = features(net, X, cache, layers)
        # row 0 of a cached extraction comes from fit's one-row probe
        same_features_of_any(net, X, [layers], got, uncached(net, X, layers))
    assert not np.allclose(uncached(a, X, layers), uncached(b, X, layers))


def relu_tanh_pair():
    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    b = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def test_same_weights_other_activation(X):
    assert_served_like_uncached(*relu_tanh_pair(), X)


def test_conv_stride_is_part_of_the_identity():
    a = nn.Sequential(nn.Conv2d(1, 2, 3, stride=1), nn.Flatten())
    b = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.AdaptiveAvgPool2d(4), nn.Flatten())
    b[0].load_state_dict(a[0].state_dict())
    a = nn.Sequential(a[0], nn.AdaptiveAvgPool2d(4), nn.Flatten())
    images = np.random.default_rng(1).normal(size=(6, 1, 9, 9)).astype(np.float32)
    assert model_fingerprint(a) != model_fingerprint(b)
    assert_served_like_uncached(a, b, images)


class Scaled(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale = scale

    def forward(self, x):
        return self.linear(x) * self.scale


def test_plain_attribute_is_part_of_the_identity(X):
    a, b = Scaled(1.0), Scaled(3.0)
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)


def test_submodule_swapped_in_place(X):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    cache = MemoryCache()
    before = features(net, X, cache)
    net[1] = nn.Tanh()
    after = features(net, X, cache)
    assert not np.allclose(before, after)
    same_features_of_any(net, X, ["output"], after, uncached(net, X))


class TwiceForward(Scaled):
    def forward(self, x):
        return 2 * self.linear(x) * self.scale


def test_forward_code_is_part_of_the_identity(X):
    a = Scaled(1.0)
    b = TwiceForward(1.0)
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)


def test_monkeypatched_forward_is_seen(X, monkeypatch):
    net = Scaled(1.0)
    cache = MemoryCache()
    before = features(net, X, cache)
    monkeypatch.setattr(Scaled, "forward", TwiceForward.forward)
    after = features(net, X, cache)
    # the same batches; doubling is exact in float32 and commutes with rounding
    assert_array_equal(after, 2 * before)


def test_buffers_dtype_and_non_persistent_buffers(X):
    class Shifted(nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.register_buffer("shift", torch.full((3,), shift), persistent=False)

        def forward(self, x):
            return self.linear(x) + self.shift

    a, b = Shifted(0.0), Shifted(1.0)
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)
    c = copy.deepcopy(a).double()
    assert model_fingerprint(c) != model_fingerprint(a)


def test_edit_through_data_is_seen_on_cpu(X):
    # .data bypasses the version counter; CPU tensors are hashed on every call
    net = make_mlp()
    cache = MemoryCache()
    before = features(net, X, cache, layers="1")
    net[0].weight.data.mul_(2.0)
    after = features(net, X, cache, layers="1")
    assert not np.allclose(before, after)
    same_features(net, X, ["1"], after, uncached(net, X, layers="1"))


def test_hooks_are_covered_by_their_code(X):
    net = make_mlp()
    cache = MemoryCache()
    plain = features(net, X, cache)

    def double(module, args, output):
        return output * 2

    handle = net[2].register_forward_hook(double)
    try:
        doubled = features(net, X, cache)
    finally:
        handle.remove()
    assert not np.allclose(plain, doubled)
    assert_array_equal(features(net, X, cache), plain)  # served as stored


def test_a_lambda_attribute_makes_the_model_uncacheable(X):
    net = Scaled(1.0)
    net.post = lambda t: t  # a plain attribute whose behaviour no name captures
    assert model_fingerprint(net) is None
    cache = MemoryCache()
    features(net, X, cache)
    assert len(cache) == 0


def test_fingerprint_is_stable_and_content_based():
    a, b = make_mlp(seed=0), make_mlp(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(make_mlp(seed=1))
    # deep copies and pickles are the same network
    assert model_fingerprint(copy.deepcopy(a)) == model_fingerprint(a)


def test_hugging_face_style_config_is_part_of_the_identity(X):
    class Config:
        def __init__(self, act):
            self.act = act

        def to_dict(self):
            return {"act": self.act}

    class Configured(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.config = Config(act)
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            y = self.linear(x)
            return torch.relu(y) if self.config.act == "relu" else torch.tanh(y)

    a, b = Configured("relu"), Configured("tanh")
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)


def test_partial_and_builtin_names():
    from sklearn_layers._extraction._identity import code_name, function_name

    def f(x, k=1):
        return x * k

    assert function_name(torch.relu) is not None
    assert function_name(f) is None  # defaults: state the code does not show
    assert code_name(functools.partial(f, k=2)) != code_name(functools.partial(f, k=3))
