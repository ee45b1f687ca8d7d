"""One rule for every ``device`` parameter (transformer, probe, GrowNet)."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_iris

from sklearn_layers import LayerFeatureTransformer
from sklearn_layers.heads import GrowNetClassifier, LinearProbeClassifier
from sklearn_layers.utils._device import resolve_device


def test_none_leaves_the_weights_where_they_are():
    assert resolve_device(None) == torch.device("cpu")  # a head: numpy data
    assert resolve_device(None, torch.nn.Linear(2, 2)) == torch.device("cpu")
    on_meta = torch.nn.Linear(2, 2, device="meta")
    assert resolve_device(None, on_meta) == torch.device("meta")
    assert resolve_device(None, torch.nn.ReLU()) == torch.device("cpu")  # no weights


def test_an_explicit_device_must_hold_the_weights():
    on_meta = torch.nn.Linear(2, 2, device="meta")
    with pytest.raises(ValueError, match="device=None"):
        resolve_device("cpu", on_meta)
    assert resolve_device("meta", on_meta) == torch.device("meta")
    assert resolve_device(torch.device("cpu"), torch.nn.Linear(2, 2)).type == "cpu"


@pytest.mark.parametrize("device", ["gpu-please", 3.5])
def test_a_name_that_is_no_device_is_a_value_error(device):
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_without_cuda_is_a_value_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_every_estimator_accepts_device_none():
    X, y = load_iris(return_X_y=True)
    X = X.astype(np.float32)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    features = LayerFeatureTransformer(net, layers=[0], device=None, cache=None)
    np.testing.assert_array_equal(
        features.fit_transform(X),
        LayerFeatureTransformer(net, layers=[0], cache=None).fit_transform(X),
    )
    for head in (LinearProbeClassifier(device=None),
                 GrowNetClassifier(device=None, max_iter=2, random_state=0)):
        assert head.fit(X, y).score(X, y) > 0.5
