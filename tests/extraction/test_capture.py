"""Capture: what leaves a hook is exactly the layer's output, and the model is restored."""

import threading

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from torch import nn

from sklearn_layers import LayerFeatureTransformer, MemoryCache

from _float32 import same_features, same_features_of_any
from _helpers import assert_unchanged, snapshot

CACHES = [None, "memory"]


def reference(module_fn, X):
    with torch.no_grad():
        return module_fn(torch.as_tensor(X)).numpy()


@pytest.mark.parametrize("cache", CACHES)
def test_in_place_relu_after_the_layer_does_not_reach_its_features(cache):
    X = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).eval()
    cache = MemoryCache() if cache else None
    got = LayerFeatureTransformer(net, layers="0", cache=cache).fit(X).transform(X)
    expected = reference(net[0], X)
    assert (expected < 0).any()  # the ReLU would have changed these
    if cache is None:
        assert_array_equal(got, expected)  # the same batch and operation
    else:  # row 0 from fit's one-row probe
        same_features(net, X, ["0"], got, expected)


@pytest.mark.parametrize("pooling", ["flatten", "cls", "last", "auto", "first_row"])
def test_views_of_an_activation_are_copied(pooling):
    # a residual "+=" after the captured block rewrites its output in place
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = nn.Linear(5, 5)
            self.after = nn.Linear(5, 5)

        def forward(self, x):
            h = self.block(x)
            h += self.after(h)
            return h

    X = np.random.default_rng(1).normal(size=(6, 3, 5)).astype(np.float32)
    net = Residual().eval()
    chosen = first_row if pooling == "first_row" else pooling
    lft = LayerFeatureTransformer(net, layers="block", pooling=chosen, cache=MemoryCache())
    got = lft.fit_transform(X)
    activation = reference(net.block, X)
    expected = {
        "flatten": activation.reshape(6, -1),
        "cls": activation[:, 0],
        "last": activation[:, -1],
        "auto": activation.mean(axis=1),
        "first_row": activation[:, 0],
    }[pooling]
    # row 0 from fit's one-row probe; a mean summed in another order
    same_features_of_any(net, X, ["block"], got, expected, pooling=chosen)


def first_row(a):
    return a[:, 0]  # a view


class TimmStyleResNet(nn.Module):
    """timm's ResNet layout: conv1, bn1, in-place act1, then residual stages."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(TimmBlock(), TimmBlock())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.layer1(self.act1(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class TimmBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x
        x = self.bn(self.conv(x))
        x += shortcut
        return self.act(x)


def test_resnet_blocks_before_in_place_relus():
    net = TimmStyleResNet().eval()
    with torch.no_grad():
        net.bn1.bias.fill_(-0.5)  # so the in-place ReLU after bn1 changes values
    X = np.random.default_rng(2).normal(size=(4, 3, 6, 6)).astype(np.float32)
    layers = ["bn1", "layer1.0.bn", "layer1"]
    got = LayerFeatureTransformer(net, layers=layers, pooling="flatten",
                                  cache=MemoryCache()).fit_transform(X)
    with torch.no_grad():
        x = torch.as_tensor(X)
        bn1 = net.bn1(net.conv1(x))
        block_bn = net.layer1[0].bn(net.layer1[0].conv(torch.relu(bn1)))
        stage = net.layer1(torch.relu(bn1))
    expected = np.hstack([t.reshape(4, -1).numpy() for t in (bn1, block_bn, stage)])
    assert (bn1 < 0).any() and (block_bn < 0).any()
    same_features_of_any(net, X, layers, got, expected, pooling="flatten")


class SequenceFirst(nn.Module):
    """An encoder block that takes and returns (T, N, D), as nn.MultiheadAttention did."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.block = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):  # x: (N, T, 3)
        h = self.embed(x).transpose(0, 1)  # (T, N, D)
        h = self.block(h)
        return self.head(h.mean(dim=0))


def test_prefetched_block_of_the_wrong_row_count_is_never_stored():
    X = np.random.default_rng(3).normal(size=(5, 7, 3)).astype(np.float32)
    net = SequenceFirst().eval()
    cache = MemoryCache()
    LayerFeatureTransformer(net, layers="head", cache=cache).fit_transform(X)
    # "block" was prefetched, but pools to (T, D) = (7, 4) for 5 rows: not
    # stored, so asking for it computes it, and that fails clearly
    with pytest.raises(ValueError, match=r"'block'.*\(7, 1, 4\).*1 rows"):
        LayerFeatureTransformer(net, layers="block", cache=cache).fit_transform(X)


def test_requested_layer_of_the_wrong_row_count_names_the_shapes():
    X = np.random.default_rng(3).normal(size=(5, 7, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"'block'.*sample axis"):
        LayerFeatureTransformer(SequenceFirst(), layers="block", cache=None).fit(X)


def test_wrong_input_width_names_model_module_and_shape():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"Sequential.*'0' \(Linear\).*\(1, 5\)"):
        LayerFeatureTransformer(net, layers="2", cache=None).fit(np.ones((3, 5)))
    cnn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"'0' \(Conv2d\).*3 input channels.*\(1, 2, 5, 5\)"):
        LayerFeatureTransformer(cnn, layers="1", cache=None).fit(np.ones((2, 2, 5, 5)))


def test_lazy_layers_are_not_checked_against_a_width_they_do_not_have_yet():
    net = nn.Sequential(nn.LazyLinear(5), nn.ReLU(), nn.Linear(5, 2))
    X = np.random.default_rng(1).normal(size=(3, 7)).astype(np.float32)
    assert LayerFeatureTransformer(net, layers="1", cache=None).fit_transform(X).shape == (3, 5)


class Inner(nn.Module):
    def forward(self, x):
        return torch.cat([x, x[:, :1].T])  # widths 4 and 1: torch refuses, for any batch


class Failing(nn.Module):
    """A model whose own code fails inside a submodule, on any input."""

    def __init__(self, error=None):
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.block = nn.Sequential(nn.ReLU(), Inner())
        self.error = error

    def forward(self, x):
        if self.error is not None:
            raise self.error
        return self.block(self.embed(x))


@pytest.mark.parametrize("error", [None, KeyError("from the model"),
                                   RuntimeError("raised by the model")])
def test_the_model_s_own_exception_keeps_its_type_and_says_where(error):
    net = Failing(error)
    before = snapshot(net)
    X = np.ones((3, 4), dtype=np.float32)
    expected = RuntimeError if error is None else type(error)
    with pytest.raises(expected) as info:
        LayerFeatureTransformer(net, layers="output", cache=None).fit(X)
    assert type(info.value) is expected  # never turned into a ValueError
    where = "'block.1' (Inner)" if error is None else "'<the model itself>' (Failing)"
    note = "\n".join(info.value.__notes__)
    assert f"Failing while running module {where}" in note
    assert "(1, 4) torch.float32" in note  # the input the model got (a one-row probe)
    assert_unchanged(net, before)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in net.modules())


def test_scripted_modules_get_a_clear_error():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X = np.ones((3, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="eager nn.Module"):
        LayerFeatureTransformer(torch.jit.script(net), layers="output", cache=None).fit(X)


@pytest.mark.parametrize("cache", CACHES)
def test_traced_module_serves_its_output_and_refuses_inner_layers(cache):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    traced = torch.jit.trace(net, torch.ones(1, 4))
    cache = MemoryCache() if cache else None
    got = LayerFeatureTransformer(traced, layers="output", cache=cache).fit_transform(X)
    expected = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(X)
    same_features_of_any(net, X, ["output"], got, expected)
    for inner in ("0", 1, "penultimate", ["output", "2:input"]):
        with pytest.raises(TypeError, match="only layers='output'"):
            LayerFeatureTransformer(traced, layers=inner, cache=None).fit(X)


def test_compiled_model_takes_the_names_it_lists_and_the_eager_ones():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    X = np.random.default_rng(2).normal(size=(6, 4)).astype(np.float32)
    compiled = torch.compile(net, backend="eager")
    listed = [name for name, _ in compiled.named_modules() if name]
    assert listed == ["_orig_mod", "_orig_mod.0", "_orig_mod.1", "_orig_mod.2"]
    for layers, eager in [("_orig_mod.0", "0"), (["_orig_mod.2:input", "1"], ["2:input", "1"]),
                          ("_orig_mod.*", "*"), ("_orig_mod", "output")]:
        got = LayerFeatureTransformer(compiled, layers=layers, cache=None).fit(X)
        expected = LayerFeatureTransformer(net, layers=eager, cache=None).fit(X)
        assert got.layer_names_ == expected.layer_names_
        assert_array_equal(got.transform(X), expected.transform(X))


class Trunk(nn.Module):
    """A submodule shared by two models; records the mode of every call."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.dropout = nn.Dropout(0.5)
        self.modes = []
        self.inside = threading.Barrier(2)

    def forward(self, x):
        self.modes.append(self.training)
        if len(self.modes) <= 2:
            self.inside.wait(timeout=10)  # both threads are mid-forward here
        return self.dropout(self.linear(x))


def test_shared_submodule_stays_in_eval_mode_until_every_thread_is_done():
    trunk = Trunk().train()
    first = nn.Sequential(trunk, nn.Linear(4, 2)).train()
    second = nn.Sequential(trunk, nn.Linear(4, 3)).train()
    before = [snapshot(first), snapshot(second)]
    X = np.random.default_rng(4).normal(size=(8, 4)).astype(np.float32)
    results, errors = {}, []

    def run(name, net):
        try:
            lft = LayerFeatureTransformer(net, layers="0", cache=None, batch_size=8)
            results[name] = [lft.fit_transform(X) for _ in range(3)]
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, m))
               for n, m in (("first", first), ("second", second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert trunk.modes and not any(trunk.modes)  # never in train mode mid-forward
    expected = reference(lambda t: trunk.linear(t), X)
    for outputs in results.values():
        for got in outputs:
            assert_array_equal(got, expected)  # the same batch and operation
    assert_unchanged(first, before[0])
    assert_unchanged(second, before[1])
    assert trunk.training


def test_an_eager_model_holding_a_scripted_submodule_is_extracted():
    inner = torch.jit.script(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    net = nn.Sequential(nn.Linear(4, 4), inner, nn.Linear(4, 2)).eval()
    X = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    got = LayerFeatureTransformer(net, layers="2:input", cache=None).fit_transform(X)
    with torch.no_grad():
        expected = inner(net[0](torch.as_tensor(X))).numpy()
    same_features_of_any(net, X, ["2:input"], got, expected)


class _GrownTable(nn.Module):
    """Builds a table in its forward and keeps it, as rotary position caches do."""

    def __init__(self):
        super().__init__()
        self.table = None

    def forward(self, x):
        if self.table is None or self.table.shape[0] < x.shape[1]:
            self.table = torch.linspace(0.5, 1.5, x.shape[1])
        return x * self.table[: x.shape[1]]


@pytest.mark.parametrize("layers", ["1", "penultimate"])
def test_what_a_forward_builds_or_materialises_stays_trainable(layers):
    # extraction runs under no_grad, not inference_mode: a tensor created there
    # and kept by the user's module would refuse autograd and in-place edits
    X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    net = nn.Sequential(nn.Linear(4, 4), _GrownTable(), nn.Linear(4, 2))
    LayerFeatureTransformer(net, layers=layers, cache=None).fit_transform(X)
    net(torch.as_tensor(X)).sum().backward()  # the table is saved for backward
    lazy = nn.Sequential(nn.LazyLinear(3), nn.ReLU())
    LayerFeatureTransformer(lazy, layers="1", cache=None).fit_transform(X)
    with torch.no_grad():
        lazy[0].weight.mul_(2)  # materialised during the extraction
    assert not lazy[0].weight.is_inference()
