import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sklearn_layers import LayerFeatureTransformer
from sklearn_layers._extraction._layers import block_names, resolve_layers
from sklearn_layers.utils.toy import (
    make_mlp,
    make_resnet18,
    make_small_cnn,
    make_transformer_encoder,
)

from _float32 import gamma


def test_block_lists_of_common_architectures():
    assert block_names(make_mlp(4, hidden=(8, 6))) == ["1", "3", "4"]
    assert block_names(make_small_cnn()) == ["2", "5", "9", "10"]
    assert block_names(make_resnet18(width=8)) == [
        "stem.2", "layer1.0", "layer1.1", "layer2.0", "layer2.1",
        "layer3.0", "layer3.1", "layer4.0", "layer4.1", "fc",
    ]
    assert block_names(make_transformer_encoder(n_layers=3)) == [
        "embed", "encoder.layers.0", "encoder.layers.1", "encoder.layers.2", "head",
    ]


def test_parameter_free_model_has_its_output_as_only_block():
    assert block_names(nn.ReLU()) == ["output"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("layer2.1", ["layer2.1"]),
        ("layer2.1.conv2", ["layer2.1.conv2"]),
        (0, ["stem.2"]),
        (-1, ["fc"]),
        (-2, ["layer4.1"]),
        ("layer3.*", ["layer3.0", "layer3.1"]),
        ("layer1.?", ["layer1.0", "layer1.1"]),
        ("penultimate", ["fc:input"]),
        ("output", ["output"]),
        ("fc:input", ["fc:input"]),
        (["layer4.1", 1, "output"], ["layer4.1", "layer1.0", "output"]),
        (("stem.2",), ["stem.2"]),
    ],
)
def test_resolve_layers(spec, expected):
    assert resolve_layers(make_resnet18(width=8), spec) == expected


def test_all_is_the_block_list():
    net = make_resnet18(width=8)
    assert resolve_layers(net, "all") == block_names(net)


@pytest.mark.parametrize(
    "spec, error, match",
    [
        ("layer9", ValueError, r"Unknown layer 'layer9'.*layer1\.0"),
        ("nothing.*", ValueError, "matches no module"),
        (10, ValueError, "out of range"),
        (-11, ValueError, "out of range"),
        (["fc", "fc"], ValueError, "more than once"),
        (["layer1.0", 1], ValueError, "more than once"),
        ([], ValueError, "at least one"),
        (1.5, TypeError, "str or an int"),
        ([None], TypeError, "str or an int"),
        ("", ValueError, "Unknown layer"),
    ],
)
def test_bad_layer_specs(spec, error, match):
    with pytest.raises(error, match=match):
        resolve_layers(make_resnet18(width=8), spec)


def test_penultimate_without_linear_layer():
    with pytest.raises(ValueError, match="no nn.Linear"):
        resolve_layers(nn.Sequential(nn.Conv2d(1, 2, 3)), "penultimate")


class TimmLike(nn.Module):
    """A torch-only model carrying timm's ``feature_info`` (one dict per stage)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.layer1 = nn.Sequential(nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
        self.layer2 = nn.Sequential(nn.Conv2d(4, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
        self.feature_info = [
            {"num_chs": 4, "reduction": 1, "module": "stem"},
            {"num_chs": 4, "reduction": 1, "module": "layer1"},
            {"num_chs": 8, "reduction": 1, "module": "layer2"},
        ]

    def forward(self, x):
        return self.layer2(self.layer1(self.stem(x)))


def test_stages_are_timm_feature_info_modules():
    net = TimmLike()
    assert resolve_layers(net, "stages") == ["stem", "layer1", "layer2"]
    # an int counts the block list, not timm's stages
    assert resolve_layers(net, 1) == [block_names(net)[1]] == ["layer1.1"]


def test_stages_without_feature_info_is_a_clear_error():
    with pytest.raises(ValueError, match="feature_info"):
        resolve_layers(nn.Sequential(nn.Linear(2, 2)), "stages")


# -- "penultimate" on models whose last module reduces a token sequence -------------


class FirstTokenHead(nn.Module):
    """A classification head on the first token, as RoBERTa's: x[:, 0] -> dense -> out."""

    def __init__(self, d, n_classes):
        super().__init__()
        self.dense = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, n_classes)

    def forward(self, hidden):
        return self.out_proj(self.dense(hidden[:, 0]).tanh())


class Pooler(nn.Module):
    """BERT's pooler: the first token through a dense layer."""

    def __init__(self, d):
        super().__init__()
        self.dense = nn.Linear(d, d)

    def forward(self, hidden):
        return self.dense(hidden[:, 0]).tanh()


class TokenModel(nn.Module):
    """Token embeddings, a per-token layer, then ``top`` on the sequence."""

    def __init__(self, top, d=6):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(20, d)
        self.mix = nn.Linear(d, d)
        self.top = top

    def forward(self, input_ids, attention_mask=None):
        return self.top(self.mix(self.embed(input_ids)).relu())


class MeanThenLinear(nn.Module):
    """A model that averages its tokens in its own forward: the linear input stays."""

    def __init__(self, d=6):
        super().__init__()
        self.embed = nn.Embedding(20, d)
        self.head = nn.Linear(d, 2)

    def forward(self, input_ids):
        return self.head(self.embed(input_ids).mean(dim=1))


IDS = {"input_ids": torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]]),
       "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}


@pytest.mark.parametrize("top, expected", [
    (FirstTokenHead(6, 3), "top:input"),
    (Pooler(6), "top:input"),
    (nn.Sequential(Pooler(6), nn.Dropout(), nn.Linear(6, 2)), "top.0:input"),
])
def test_penultimate_of_a_sequence_reducing_top_is_the_last_hidden_state(top, expected):
    net = TokenModel(top).eval()
    for pooling, reference in [
        ("mean", lambda h, m: (h * m[..., None]).sum(1) / m.sum(1, keepdim=True)),
        ("cls", lambda h, m: h[:, 0]),
    ]:
        lft = LayerFeatureTransformer(net, pooling=pooling, cache=None).fit(IDS)
        assert lft.layer_names_ == [expected]
        with torch.no_grad():
            hidden = net.mix(net.embed(IDS["input_ids"])).relu()
        expected_features = reference(hidden, IDS["attention_mask"].float()).numpy()
        np.testing.assert_allclose(lft.transform(IDS), expected_features,
                                   rtol=4 * gamma(4), atol=0)


def test_the_row_traced_to_resolve_penultimate_is_counted():
    from sklearn_layers import MemoryCache

    net, cache = TokenModel(Pooler(6)).eval(), MemoryCache()
    LayerFeatureTransformer(net, cache=cache).fit(IDS)
    # the trace (1 row) and fit's width row (1 row); a named layer traces nothing
    assert cache.n_rows_computed == 2
    LayerFeatureTransformer(net, layers="top:input", cache=(cache := MemoryCache())).fit(IDS)
    assert cache.n_rows_computed == 1


@pytest.mark.parametrize("net, X, expected", [
    (MeanThenLinear(), torch.tensor([[1, 2, 3]]), "head:input"),
    (make_small_cnn(), np.zeros((2, 1, 28, 28), np.float32), "10:input"),
    (make_transformer_encoder(n_layers=2), torch.randint(0, 100, (2, 7)), "head:input"),
    (make_mlp(), np.zeros((2, 4), np.float32), "4:input"),
])
def test_penultimate_stays_the_last_linear_input_elsewhere(net, X, expected):
    assert LayerFeatureTransformer(net, cache=None).fit(X).layer_names_ == [expected]


def test_a_mean_over_an_already_reduced_layer_says_so():
    net = TokenModel(Pooler(6)).eval()
    for pooling in ("mean", "max", {"top.dense:input": "mean"}):
        with pytest.warns(UserWarning, match=r"cannot apply to layer 'top.dense:input'"):
            LayerFeatureTransformer(net, layers="top.dense:input", pooling=pooling,
                                    cache=None).fit(IDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # one pooling over layers that have tokens: vectors pass through, no warning
        LayerFeatureTransformer(net, layers=["mix", "top.dense:input"], pooling="mean",
                                cache=None).fit(IDS)
        LayerFeatureTransformer(net, layers="top.dense:input", pooling="auto",
                                cache=None).fit(IDS)
