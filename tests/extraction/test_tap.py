"""Taps: observe a module's input and output without a hook, and leave it as found."""

import torch
from torch import nn

from sklearn_layers._extraction._fingerprint import model_fingerprint
from sklearn_layers._extraction._tap import is_fused_layer, tap


def test_tap_reports_and_restores_the_instance_dict():
    layer = nn.Linear(3, 2)
    before = dict(layer.__dict__)
    seen = []
    out_handle = tap(layer, "output", lambda value: seen.append(("out", value)))
    in_handle = tap(layer, "input", lambda value: seen.append(("in", value)))
    x = torch.ones(4, 3)
    y = layer(x)
    assert [kind for kind, _ in seen] == ["in", "out"]
    assert seen[0][1][0] is x and seen[1][1] is y
    out_handle.remove()
    assert "forward" in layer.__dict__  # one listener left
    in_handle.remove()
    assert layer.__dict__.keys() == before.keys() and "forward" not in layer.__dict__


def test_a_users_own_instance_forward_is_kept_and_called():
    layer = nn.Linear(3, 2)

    def doubled(x):
        return 2 * nn.Linear.forward(layer, x)

    layer.forward = doubled
    seen = []
    handle = tap(layer, "output", seen.append)
    x = torch.ones(1, 3)
    out = layer(x)
    handle.remove()
    assert torch.equal(out, 2 * nn.Linear.forward(layer, x)) and torch.equal(seen[0], out)
    assert layer.__dict__["forward"] is doubled


def test_the_model_identity_sees_through_an_active_tap():
    net = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    plain = model_fingerprint(net)
    handle = tap(net[0], "output", lambda value: None)
    try:
        assert model_fingerprint(net) == plain
    finally:
        handle.remove()


def test_only_the_fused_layer_itself_is_tapped():
    layer = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    assert is_fused_layer(layer)
    assert not is_fused_layer(layer.self_attn)
