"""The layer-metric registry: names, functions, directions."""

import numpy as np
import pytest

from sklearn_layers.metrics import (
    effective_rank,
    get_layer_metric,
    get_layer_metric_names,
    matrix_entropy,
    nc1,
)

# float64 arithmetic on these small matrices: relative errors of order n * 1e-16.
F64 = dict(rtol=1e-10, atol=1e-12)


def random_features(rng, n=60, d=8):
    return rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)


# -- registry ---------------------------------------------------------------------


def test_registry_names_functions_directions():
    assert get_layer_metric_names() == [
        "effective_rank", "matrix_entropy", "twonn_dimension", "nc1", "knn_loo_accuracy",
    ]
    assert get_layer_metric("nc1") == (nc1, False, True)
    assert get_layer_metric("effective_rank").function is effective_rank
    with pytest.raises(ValueError, match="Unknown layer metric 'rankme'.*effective_rank"):
        get_layer_metric("rankme")


def test_input_validation(rng):
    with pytest.raises(ValueError, match="NaN"):
        effective_rank(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="Expected 2D array"):
        matrix_entropy(np.ones(5))
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        effective_rank(np.ones((1, 3)))
