import pytest
from torch import nn

from sklearn_layers._extraction._layers import block_names, resolve_layers
from sklearn_layers.utils.toy import (
    make_mlp,
    make_resnet18,
    make_small_cnn,
    make_transformer_encoder,
)


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
