"""The float32 bounds in _float32.py hold where they must and catch what they must."""

import numpy as np
import pytest

from sklearn_layers import LayerFeatureTransformer
from sklearn_layers.utils.toy import make_mlp, make_small_cnn

from _float32 import feature_error_bound, gamma, same_features, same_features_of_any

CASES = {
    "mlp": (make_mlp, lambda rng, n: rng.integers(0, 200, (n, 4)).astype(np.float64),
            ["1", "3"]),
    "cnn": (make_small_cnn, lambda rng, n: rng.normal(size=(n, 1, 10, 10)) * 50,
            ["2", "5", "9"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bound_holds_across_batch_compositions_and_catches_a_wrong_row(case):
    factory, draw, layers = CASES[case]
    net, rng = factory(), np.random.default_rng(0)
    rows = draw(rng, 2)
    alone = LayerFeatureTransformer(net, layers=layers, cache=None).fit(rows)
    expected = alone.transform(rows[:1])
    for n in (1, 2, 7, 33, 130):  # another batch around the row: another blocking
        batch = np.concatenate([draw(rng, n), rows[:1], draw(rng, n)])
        got = alone.transform(batch)[n : n + 1]
        same_features(net, rows[:1], layers, got, expected)
    # the features of another row are far outside the bound
    with pytest.raises(AssertionError, match="beyond the float32 rounding bound"):
        same_features(net, rows[:1], layers, alone.transform(rows[1:]), expected)


def test_bound_scales_with_the_row():
    net = make_mlp()
    small = feature_error_bound(net, [[1.0, 1.0, 1.0, 1.0]], ["3"])
    large = feature_error_bound(net, [[1e4, 1e4, 1e4, 1e4]], ["3"])
    # linear in the input's size (the n * TINY underflow term aside, ~1e-37),
    # up to the float64 rounding of the bound's own few dozen operations
    np.testing.assert_allclose(large / small, 1e4, rtol=gamma(64, np.float64))


def test_twin_bound_holds_for_stages_with_batch_norm_and_catches_a_wrong_row():
    from sklearn_layers.utils.toy import make_staged_cnn

    net, rng = make_staged_cnn().eval(), np.random.default_rng(1)
    rows = rng.normal(size=(2, 3, 16, 16)).astype(np.float32) * 20
    layers = ["block1", "block2", "block3"]
    alone = LayerFeatureTransformer(net, layers=layers, cache=None).fit(rows)
    expected = alone.transform(rows[:1])
    for n in (1, 5, 40):
        others = rng.normal(size=(n, 3, 16, 16)).astype(np.float32)
        batch = np.concatenate([others, rows[:1]])
        got = alone.transform(batch)[n:]
        same_features_of_any(net, rows[:1], layers, got, expected)
    with pytest.raises(AssertionError, match="beyond the float32 rounding bound"):
        same_features_of_any(net, rows[:1], layers, alone.transform(rows[1:]), expected)
