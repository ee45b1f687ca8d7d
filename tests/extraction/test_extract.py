"""The batch loop: rows in the caller's order, cached rows checked, widths enforced."""

import numpy as np
import pytest
import torch

from sklearn_layers import MemoryCache
from sklearn_layers._extraction._extract import extract
from sklearn_layers._extraction._fingerprint import cache_identity
from sklearn_layers._extraction._inputs import make_input
from sklearn_layers._extraction._plan import make_plan
from sklearn_layers.utils.toy import make_mlp

DEVICE = torch.device("cpu")


@pytest.fixture
def net():
    return make_mlp()


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(23, 4)).astype(np.float32)


def run(net, X, **kwargs):
    kwargs.setdefault("batch_size", 5)
    return extract(net, make_input(X), {"1": "auto"}, device=DEVICE, **kwargs)


def test_batches_of_any_size_give_the_same_rows(net, X):
    one = run(net, X, batch_size=1, widths={"1": 16})
    many = run(net, X, batch_size=7, widths={"1": 16})
    with torch.no_grad():
        expected = net[1](net[0](torch.as_tensor(X))).numpy()
    # GEMM of 1 or 7 rows: another summation order over 4 terms at most
    bound = 4 * 2 * np.finfo(np.float32).eps * (np.abs(X) @ np.abs(
        net[0].weight.detach().numpy().T) + np.abs(net[0].bias.detach().numpy()))
    assert (np.abs(one - expected) <= bound).all()
    assert (np.abs(many - expected) <= bound).all()


def test_probe_mode_returns_a_dict_per_layer(net, X):
    got = run(net, X[:3])
    assert set(got) == {"1"} and got["1"].shape == (3, 16)


def test_cached_rows_of_another_width_are_recomputed(net, X):
    cache = MemoryCache()
    poolings = {"1": "auto"}
    fingerprint = cache_identity(net, poolings, cache=cache, cacheable=True, device=DEVICE,
                                 float_dtype=torch.float32)
    plan = make_plan(poolings, cache=cache, fingerprint=fingerprint)
    chunk = next(make_input(X).chunks(5))
    cache.store(fingerprint, {plan.keys["1"]: np.zeros((chunk.n, 3))}, chunk.digests)
    got = run(net, X, cache=cache, widths={"1": 16})
    assert got.shape == (23, 16) and not (got[:5] == 0).all()


def test_a_width_other_than_fitted_is_a_clear_error(net, X):
    with pytest.raises(ValueError, match="16 features per sample, but 8 were found"):
        run(net, X, widths={"1": 8})
