"""layer_metrics_from_features: the table of single metrics, sampling, bad input."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sklearn_layers import layer_metrics_from_features
from sklearn_layers.metrics import (
    effective_rank,
    get_layer_metric_names,
    knn_loo_accuracy,
    matrix_entropy,
    nc1,
    twonn_dimension,
)

# float64 arithmetic on these small matrices: relative errors of order n * 1e-16.
F64 = dict(rtol=1e-10, atol=1e-12)


def random_features(rng, n=60, d=8):
    return rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0, size=d)


# -- layer_metrics ----------------------------------------------------------------


def test_from_features_matches_single_metrics(rng):
    y = np.repeat([0, 1, 2], 20)
    layers = {"a": random_features(rng), "b": random_features(rng, d=3)}
    table = layer_metrics_from_features(layers, y, max_samples=None)
    assert table["layer"].tolist() == ["a", "b"]
    assert table["layer_index"].tolist() == [0, 1]
    assert table["n_samples"].tolist() == [60, 60]
    assert table["n_features"].tolist() == [8, 3]
    for layer, F in layers.items():
        row = table.set_index("layer").loc[layer]
        assert row["effective_rank"] == effective_rank(F)
        assert row["matrix_entropy"] == matrix_entropy(F)
        assert row["twonn_dimension"] == twonn_dimension(F)
        assert row["nc1"] == nc1(F, y)
        assert row["knn_loo_accuracy"] == knn_loo_accuracy(F, y)
        assert row["seconds"] >= 0


def test_label_free_without_y_and_metric_choice(rng):
    layers = {"a": random_features(rng)}
    table = layer_metrics_from_features(layers)
    assert "nc1" not in table and "knn_loo_accuracy" not in table
    assert {"effective_rank", "matrix_entropy", "twonn_dimension"} <= set(table)
    only = layer_metrics_from_features(layers, metrics="effective_rank")
    assert only.columns.tolist() == [
        "layer", "layer_index", "n_samples", "n_features", "effective_rank", "seconds",
    ]
    with pytest.raises(ValueError, match="'nc1' needs class labels"):
        layer_metrics_from_features(layers, metrics=["nc1"])
    with pytest.raises(ValueError, match="Unknown layer metric"):
        layer_metrics_from_features(layers, metrics=["rank"])


def test_subsample_is_stratified_shared_and_reproducible(rng):
    y = np.repeat([0, 1], [300, 100])
    F = np.arange(400.0)[:, None] * np.ones((1, 3)) + rng.normal(size=(400, 3))
    layers = {"a": F, "b": 2 * F}
    first = layer_metrics_from_features(layers, y, max_samples=80, random_state=0)
    again = layer_metrics_from_features(layers, y, max_samples=80, random_state=0)
    metric_columns = get_layer_metric_names()
    assert_allclose(first[metric_columns].to_numpy(), again[metric_columns].to_numpy())
    assert first["n_samples"].tolist() == [80, 80]
    # Both layers saw the same rows: b = 2a, and every metric here is scale-free.
    assert_allclose(first.loc[0, metric_columns].to_numpy(dtype=float),
                    first.loc[1, metric_columns].to_numpy(dtype=float), **F64)


def test_subsample_keeps_class_shares():
    from sklearn_layers.metrics._validation import stratified_rows

    y = np.repeat([0, 1], [300, 100])
    rows = stratified_rows(400, y, 80, 0)
    assert len(rows) == 80 and len(np.unique(rows)) == 80
    assert np.bincount(y[rows]).tolist() == [60, 20]
    assert stratified_rows(50, None, 80, 0).tolist() == list(range(50))


def test_from_features_bad_input(rng):
    with pytest.raises(TypeError, match="non-empty dict"):
        layer_metrics_from_features([rng.normal(size=(5, 2))])
    with pytest.raises(ValueError, match="same number of rows"):
        layer_metrics_from_features({"a": rng.normal(size=(5, 2)), "b": rng.normal(size=(6, 2))})
    with pytest.raises(ValueError, match="max_samples must be an int >= 3"):
        layer_metrics_from_features({"a": rng.normal(size=(5, 2))}, max_samples=1)


def test_a_dead_layer_is_nan_with_a_warning_and_the_others_stand(rng):
    F = random_features(rng, n=40, d=5)
    y = np.arange(40) % 2
    with pytest.warns(RuntimeWarning, match="Layer 'dead' is dead"):
        table = layer_metrics_from_features({"alive": F, "dead": np.zeros((40, 5))}, y)
    metric_columns = get_layer_metric_names()
    assert table.loc[1, metric_columns].isna().all()
    alone = layer_metrics_from_features({"alive": F}, y)
    assert_allclose(table.loc[0, metric_columns].to_numpy(dtype=float),
                    alone.loc[0, metric_columns].to_numpy(dtype=float))


def test_a_metric_undefined_on_one_layer_is_nan_for_that_layer(rng):
    F = random_features(rng, n=40, d=5)
    few = np.repeat(F[:2], 20, axis=0)  # two distinct rows: no TwoNN dimension
    with pytest.warns(RuntimeWarning, match="twonn_dimension is undefined on layer 'few'"):
        table = layer_metrics_from_features({"many": F, "few": few},
                                            metrics=["twonn_dimension", "effective_rank"])
    assert np.isnan(table.loc[1, "twonn_dimension"])
    assert table.loc[1, "effective_rank"] == pytest.approx(effective_rank(few))
    assert np.isfinite(table.loc[0, "twonn_dimension"])


def test_too_many_neighbours_is_still_an_error(rng):
    with pytest.raises(ValueError, match="n_neighbors=10 must be smaller"):
        layer_metrics_from_features({"a": random_features(rng, n=8)}, np.arange(8) % 2,
                                    n_neighbors=10)
