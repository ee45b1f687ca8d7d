"""Input adapters: every way users pass rows, keyed and validated."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.utils.toy import make_mlp

from _float32 import same_features, same_features_of_any


class Keyed(nn.Module):
    """``model(x=..., offset=...)`` or ``model(x=..., scale=...)``."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x, offset=None, scale=None):
        if offset is not None:
            x = x + offset
        if scale is not None:
            x = x * scale
        return self.linear(x)


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)


def test_dict_key_names_are_part_of_the_row_key(X):
    net = Keyed()
    Z = np.full_like(X, 2.0)
    cache = MemoryCache()
    offset = LayerFeatureTransformer(net, layers="output", cache=cache).fit_transform(
        {"x": X, "offset": Z}
    )
    scale = LayerFeatureTransformer(net, layers="output", cache=cache).fit_transform(
        {"x": X, "scale": Z}
    )
    expected = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(
        {"x": X, "scale": Z}
    )
    assert not np.allclose(offset, scale)
    same_features_of_any(net, {"x": X, "scale": Z}, ["output"], scale, expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_dict_input_with_nan_is_rejected_like_an_array(X, bad):
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="'x' contains NaN or infinity"):
        LayerFeatureTransformer(Keyed(), layers="output").fit({"x": X})
    with pytest.raises(ValueError, match="NaN|infinity"):
        LayerFeatureTransformer(Keyed(), layers="output").fit(X)


def test_a_mapping_that_is_not_a_dict_is_a_dict_input(X):
    from collections import UserDict

    net = Keyed()
    batch = UserDict({"x": torch.as_tensor(X)})  # as a tokenizer's BatchEncoding is
    got = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(batch)
    expected = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(
        {"x": X}
    )
    assert_array_equal(got, expected)


def test_bfloat16_tensor_gives_the_same_features_with_and_without_a_cache(X):
    net = make_mlp()
    t = torch.as_tensor(X).to(torch.bfloat16)
    cache = MemoryCache()
    cached = LayerFeatureTransformer(net, layers="1", cache=cache).fit_transform(t)
    plain = LayerFeatureTransformer(net, layers="1", cache=None).fit_transform(t)
    # bfloat16 -> float32 is exact, so only GEMM blocking differs
    values = t.float().numpy()
    same_features(net, values, ["1"], cached, plain)
    assert len(cache) > 0
    # a bfloat16 row and its float32 value are different rows
    f32 = LayerFeatureTransformer(net, layers="1", cache=cache).fit_transform(t.float())
    same_features(net, values, ["1"], f32, plain)


def test_single_string_is_not_a_list_of_characters():
    with pytest.raises(ValueError, match="single string"):
        LayerFeatureTransformer(make_mlp(), tokenizer=len).fit_transform("hello world")


def test_sparse_tensor_is_a_clear_type_error(X):
    with pytest.raises(TypeError, match="sparse tensor"):
        LayerFeatureTransformer(make_mlp()).fit(torch.as_tensor(X).to_sparse())


def test_data_loader_is_read_in_order(X):
    net = make_mlp()
    y = torch.arange(len(X))
    loader = DataLoader(TensorDataset(torch.as_tensor(X), y), batch_size=3)
    expected = LayerFeatureTransformer(net, layers="3", cache=None).fit_transform(X)
    for cache in (None, MemoryCache()):
        got = LayerFeatureTransformer(net, layers="3", cache=cache).fit_transform(loader)
        same_features(net, X, ["3"], got, expected)  # batches of 3, not one


def test_shuffled_data_loader_is_refused(X):
    loader = DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=3, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        LayerFeatureTransformer(make_mlp()).fit(loader)


class InPlaceKeyword(nn.Module):
    """``model(x=...)`` whose first operation rewrites its input in place."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x.relu_())


def _as(kind, X):
    if kind == "numpy":
        return X.copy()
    if kind == "tensor":
        return torch.tensor(X)
    if kind == "dict of arrays":
        return {"x": X.copy()}
    return {"x": torch.tensor(X)}


@pytest.mark.parametrize("cache", [None, "memory"])
@pytest.mark.parametrize("kind", ["numpy", "tensor", "dict of arrays", "dict of tensors"])
def test_a_model_writing_its_input_in_place_leaves_x_unchanged(X, kind, cache):
    torch.manual_seed(0)
    if kind.startswith("dict"):
        net = InPlaceKeyword()
    else:
        net = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(4, 3))
    data = _as(kind, X)
    before = _as(kind, X)
    # one batch holds every row: nothing is indexed, so nothing is copied on the way
    lft = LayerFeatureTransformer(net, layers="output",
                                  cache=None if cache is None else MemoryCache())
    lft.fit(_as(kind, X + 1))  # other rows: every row of data misses the cache
    lft.transform(data)
    lft.fit_transform(data)
    if kind.startswith("dict"):
        data, before = data["x"], before["x"]
    assert_array_equal(np.asarray(data), np.asarray(before))
