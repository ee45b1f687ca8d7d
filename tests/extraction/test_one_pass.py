"""A grid over the names users write runs each row through the network once,
and every name is served its own features, even where two names denote one tensor."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers._extraction._layers import block_names

from _float32 import (
    assert_rows_close,
    same_features,
    same_features_of_any,
    transformer_rtol,
)
from _helpers import RowCounter


class Staged(nn.Module):
    """User-named ``nn.Sequential`` stages, chained by ``forward``, then a head."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(
            nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True)
        )
        self.block3 = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.flat = nn.Flatten()
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        return self.fc(self.flat(self.block3(self.block2(self.block1(x)))))


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(45, 1, 8, 8)).astype(np.float32)
    y = np.arange(45) % 3
    return X, y


def test_block_list_stops_at_a_container_boundary():
    # block3's output is not absorbed into the top-level Flatten after it
    assert block_names(Staged()) == ["block1.1", "block2.2", "block3.2", "fc"]


NAMES = ["block1", "block2", "block3", "block3.2", "flat", "penultimate", "fc:input"]


def test_grid_over_the_names_users_write_runs_each_row_once(data):
    X, y = data
    net = Staged().eval()
    counter = RowCounter(net.block1[0])
    pipe = Pipeline([
        ("features", LayerFeatureTransformer(net, cache=MemoryCache())),
        ("head", LogisticRegression(max_iter=200)),
    ])
    # "penultimate" and "fc:input" are the same layer: one of them per grid
    grid = GridSearchCV(pipe, {"features__layers": NAMES[:-1]}, cv=3).fit(X, y)
    assert counter.rows == len(X)
    # the served features are each name's own
    cache = grid.estimator.get_params()["features__cache"]
    for name in NAMES:
        counter.take()
        lft = LayerFeatureTransformer(net, layers=name, cache=cache)
        got = lft.fit_transform(X)
        assert counter.take() == 0, name
        fresh = LayerFeatureTransformer(net, layers=name, cache=None).fit_transform(X)
        # the grid's rows ran in its folds' batches: float32 rounding apart
        same_features_of_any(net, X, lft.layer_names_, got, fresh)
    counter.remove()


def test_wrapped_models_expose_the_backbone_stages():
    from sklearn_layers.utils.toy import make_resnet18

    inner = block_names(make_resnet18(width=8))
    wrapped = block_names(nn.Sequential(nn.Identity(), make_resnet18(width=8)))
    assert wrapped == [f"1.{name}" for name in inner]


def test_compiled_model_is_extracted_through_its_eager_module(data):
    X, _ = data
    net = Staged().eval()
    compiled = torch.compile(net, backend="eager")
    lft = LayerFeatureTransformer(compiled, layers="block2", cache=MemoryCache())
    first = lft.fit_transform(X)
    second = lft.transform(X)  # a second extraction runs too
    expected = LayerFeatureTransformer(net, layers="block2", cache=None).fit_transform(X)
    assert lft.blocks_ == block_names(net)
    same_features_of_any(net, X, ["block2"], first, expected)
    same_features_of_any(net, X, ["block2"], second, expected)


@pytest.mark.slow
def test_hugging_face_names_of_one_hidden_state_come_from_one_pass():
    from sklearn_layers.models import load_minilm

    model, tokenizer = load_minilm()
    texts = ["a short one", "a somewhat longer sentence for the encoder", "hi", "x y z"]
    counter = RowCounter(model.embeddings.word_embeddings)
    cache = MemoryCache()
    first = LayerFeatureTransformer(model, layers="encoder", tokenizer=tokenizer,
                                    cache=cache).fit_transform(texts)
    rows = counter.take()
    assert rows == len(texts)
    last = LayerFeatureTransformer(model, layers="encoder.layer.5", tokenizer=tokenizer,
                                   cache=cache).fit_transform(texts)
    assert counter.take() == 0
    assert_array_equal(last, first)  # one tensor, pooled alike in one pass
    mid = LayerFeatureTransformer(model, layers="encoder.layer.2", tokenizer=tokenizer,
                                  cache=cache).fit_transform(texts)
    assert counter.take() == 0  # a prefetched block
    fresh = LayerFeatureTransformer(model, layers="encoder.layer.2", tokenizer=tokenizer,
                                    cache=None).fit_transform(texts)
    counter.remove()
    # cached rows ran in another batch than the fresh ones
    longest = max(len(tokenizer(t)["input_ids"]) for t in texts)
    rtol = transformer_rtol(d_model=384, d_ff=1536, n_layers=3, seq_len=longest,
                            n_heads=12)
    assert_rows_close(mid, fresh, rtol)


class Reused(nn.Module):
    """One ReLU module called twice, as torchvision's ``BasicBlock`` reuses ``relu``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 8)
        self.act = nn.ReLU()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.act(self.fc2(self.act(self.fc1(x)))))


@pytest.mark.parametrize("layers", [
    "act", "head:input", ["act", "head:input"], ["head:input", "act"],
    ["act", "fc2:input"], ["fc2:input", "head:input", "act"],
])
def test_a_module_called_twice_is_cached_by_the_output_it_returns_first(layers):
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    net = Reused().eval()
    fresh = LayerFeatureTransformer(net, layers=layers, cache=None)
    expected = fresh.fit_transform(X)
    got = LayerFeatureTransformer(net, layers=layers, cache=MemoryCache()).fit_transform(X)
    # every row, the traced first one included
    same_features_of_any(net, X, fresh.layer_names_, got, expected)


def test_names_of_a_reused_modules_outputs_are_served_as_their_own():
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    net = Reused().eval()
    counter = RowCounter(net.fc1)
    cache = MemoryCache()
    LayerFeatureTransformer(net, layers="act", cache=cache).fit_transform(X)
    assert counter.take() == len(X)
    for name in ["act", "fc2:input", "head:input"]:
        first = LayerFeatureTransformer(net, layers=name, cache=cache).fit_transform(X)
        # "act" and "head:input" ("penultimate") were prefetched; "fc2:input", the
        # very tensor of act's first output, is an entry of its own, computed once
        assert counter.take() == (len(X) if name == "fc2:input" else 0), name
        again = LayerFeatureTransformer(net, layers=name, cache=cache).fit_transform(X)
        assert counter.take() == 0, name
        expected = LayerFeatureTransformer(net, layers=name, cache=None).fit_transform(X)
        counter.take()
        assert_array_equal(again, first)
        same_features_of_any(net, X, [name], first, expected)
    counter.remove()


class _ClampIfBig(nn.Module):
    """The identity on small rows, a new tensor on large ones."""

    def forward(self, x):
        return x if x.abs().max() < 3 else x.clamp(-3, 3)


def test_a_name_is_never_served_another_names_rows():
    # Row 0 makes "1" return the very tensor of "0"; later rows do not: "1"
    # is stored under its own key, never served as "0"
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), _ClampIfBig(), nn.Linear(8, 2))
    X = np.zeros((10, 4), np.float32)
    X[5:] = 10.0
    cache = MemoryCache()
    LayerFeatureTransformer(net, layers=["1", "2"], cache=cache, prefetch=False).fit_transform(X)
    served = LayerFeatureTransformer(net, layers=["0"], cache=cache,
                                     prefetch=False).fit_transform(X)
    computed = LayerFeatureTransformer(net, layers=["0"], cache=None).fit_transform(X)
    same_features(net, X, ["0"], served, computed)  # not layer "1"'s rows (off by 7)
