import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_layers._extraction._pooling import check_pooling, pool

from _float32 import gamma


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    dims=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    pooling=st.sampled_from(["auto", "mean", "max", "flatten", 1, 2]),
)
def test_every_pooling_gives_one_row_per_sample(batch, dims, pooling):
    a = torch.randn(batch, *dims)
    out = pool(a, pooling)
    assert out.ndim == 2 and out.shape[0] == batch
    if pooling == "flatten":
        assert out.shape[1] == int(np.prod(dims))


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_mask_aware_pooling_ignores_padding(lengths):
    T, D = 6, 3
    a = torch.randn(len(lengths), T, D)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    padded = a.clone()
    padded[mask == 0] = 1e6  # anything in the padding must not matter
    for i, n in enumerate(lengths):
        # two float32 means of the same n values: gamma(n + 1) mean|a| each
        bound = 2 * gamma(n + 1) * a[i, :n].abs().mean(0)
        assert ((pool(padded, "mean", mask)[i] - a[i, :n].mean(0)).abs() <= bound).all()
        # the others pick values: nothing to round
        assert torch.equal(pool(padded, "max", mask)[i], a[i, :n].amax(0))
        assert torch.equal(pool(padded, "last", mask)[i], a[i, n - 1])
        assert torch.equal(pool(padded, "cls", mask)[i], a[i, 0])


def padding_mask(lengths, T, left):
    """A batch's mask: row i has lengths[i] real tokens, at the end when ``left``."""
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, T - n:] = 1
        else:
            mask[i, :n] = 1
    return mask


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=4), k=st.integers(1, 4),
       left=st.booleans())
def test_int_pooling_of_tokens_reads_each_rows_real_tokens_only(lengths, k, left):
    # a row's k averages are those of its real tokens alone, whatever its batch pads
    T, D = 6, 3
    a, mask = torch.randn(len(lengths), T, D), padding_mask(lengths, T, left)
    padded = a.clone()
    padded[mask == 0] = 1e6
    out = pool(padded, k, mask)
    for i, n in enumerate(lengths):
        real = a[i][mask[i].bool()]
        # the same averages of the same values: the same float32 operations
        expected = pool(real[None], k)[0] if n else torch.zeros(k * D)
        assert torch.equal(out[i], expected)


@pytest.mark.parametrize("pooling", ["auto", "mean", "max", "cls", "last", 2])
def test_a_layer_with_other_tokens_than_the_mask_is_refused(pooling):
    # one token prepended (a class or register token): which are padding is unknown
    a, mask = torch.randn(2, 5, 3), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with pytest.raises(ValueError, match="5 tokens .* the padding mask has 4"):
        pool(a, pooling, mask)
    assert pool(a, "flatten", mask).shape == (2, 15)  # flatten reads no mask


def test_token_poolings_refuse_feature_maps():
    with pytest.raises(ValueError, match="3-D"):
        pool(torch.randn(2, 3, 4, 4), "cls")


def test_callable_must_keep_the_batch():
    with pytest.raises(ValueError, match="one row per sample"):
        pool(torch.randn(3, 4), lambda a: a.sum())


@pytest.mark.parametrize(
    "bad, match",
    [("median", "Expected one of"), (1.5, "Expected one of"), (None, "Expected one of"),
     (0, ">= 1"), (-1, ">= 1")],
)
def test_bad_pooling_names_what_exists(bad, match):
    with pytest.raises(ValueError, match=match):
        check_pooling(bad, ["x"])


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=4),
       left=st.booleans())
def test_first_and_last_tokens_are_real_whatever_the_padding_side(lengths, left):
    T, D = 6, 3
    a, mask = torch.randn(len(lengths), T, D), padding_mask(lengths, T, left)
    for i, n in enumerate(lengths):
        if n == 0:  # no real token: index 0, as without a mask
            continue
        first = T - n if left else 0
        assert torch.equal(pool(a, "cls", mask)[i], a[i, first])
        assert torch.equal(pool(a, "last", mask)[i], a[i, first + n - 1])
