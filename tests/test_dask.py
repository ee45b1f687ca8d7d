import sys

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklearn_layers import (
    FrozenModel,
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
)
from sklearn_layers import dask as sld
from sklearn_layers._frozen import _clear_loaded
from sklearn_layers.utils.toy import make_mlp, make_small_cnn

from _float32 import same_features

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8).astype(int)
    return X, y


@pytest.fixture
def net():
    return make_mlp()


def _synchronous():
    return dask.config.set(scheduler="synchronous")


# --- dask-array helpers ---------------------------------------------------------


def test_transform_chunks_shape_and_values(net, data):
    X, _ = data
    lft = LayerFeatureTransformer(net, layers="all", cache=None).fit(X)
    out = sld.transform(lft, da.from_array(X, chunks=(25, 4)))
    assert out.shape == (90, lft.n_features_out_)
    assert out.chunks == ((25, 25, 25, 15), (lft.n_features_out_,))
    assert out.dtype == np.float32
    with _synchronous():
        assert_array_equal(out.compute(), lft.transform(X))


def test_transform_of_images_drops_the_spatial_axes():
    images = np.random.default_rng(1).normal(size=(20, 1, 12, 12)).astype(np.float32)
    lft = LayerFeatureTransformer(make_small_cnn(), layers=["2", "5"], cache=None).fit(
        images
    )
    out = sld.transform(lft, da.from_array(images, chunks=(8, 1, 12, 12)))
    assert out.chunks == ((8, 8, 4), (lft.n_features_out_,))
    with _synchronous():
        assert_array_equal(out.compute(), lft.transform(images))


def test_feature_count_change_without_n_features_out(net, data):
    # a pipeline has no n_features_out_: the width comes from a one-row probe
    X, _ = data
    pipe = make_pipeline(
        LayerFeatureTransformer(net, layers="all", cache=None), PCA(n_components=3)
    ).fit(X)
    out = sld.transform(pipe, da.from_array(X, chunks=40))
    assert out.chunks == ((40, 40, 10), (3,))
    # each chunk is one batch: the same float32 operations as transforming it alone
    expected = np.vstack([pipe.transform(X[i : i + 40]) for i in range(0, 90, 40)])
    with _synchronous():
        assert_array_equal(out.compute(), expected)


def test_predict_and_predict_proba(net, data):
    X, y = data
    ilc = IntermediateLayerClassifier(LayerFeatureTransformer(net, cache=None),
                                      layers=["1", "3"], cv=2).fit(
        X, y
    )
    dX = da.from_array(X, chunks=30)
    y_pred = sld.predict(ilc, dX)
    proba = sld.predict_proba(ilc, dX)
    assert y_pred.chunks == ((30, 30, 30),)
    assert proba.chunks == ((30, 30, 30), (len(ilc.classes_),))
    # each chunk is one batch: the same float32 operations as predicting it alone
    expected = np.vstack([ilc.predict_proba(X[i : i + 30]) for i in range(0, 90, 30)])
    with _synchronous():
        assert_array_equal(y_pred.compute(), ilc.predict(X))
        assert_array_equal(proba.compute(), expected)


def test_helpers_on_the_distributed_cluster(client, net, data, tmp_path):
    X, y = data
    handle = FrozenModel.from_module(net, tmp_path / "mlp.pt", factory=make_mlp)
    pipe = Pipeline(
        [
            ("features", LayerFeatureTransformer(handle, layers="3", cache=None)),
            ("head", LogisticRegression(max_iter=500)),
        ]
    ).fit(X, y)
    dX = da.from_array(X, chunks=30)
    features = sld.transform(pipe[:-1], dX).compute()  # default scheduler: the client
    assert_array_equal(features, pipe[:-1].transform(X))
    assert_array_equal(sld.predict(pipe, dX).compute(), pipe.predict(X))


def _thread_count(X):
    return np.full((X.shape[0], 1), torch.get_num_threads(), dtype=np.float64)


def test_one_torch_thread_per_task_then_restored(data):
    X, _ = data
    reporter = FunctionTransformer(_thread_count).fit(X)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with dask.config.set(scheduler="threads", num_workers=3):
            seen = sld.transform(reporter, da.from_array(X, chunks=10)).compute()
        assert set(np.unique(seen)) == {1.0}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_bad_arrays_are_clear_errors(net, data):
    X, _ = data
    lft = LayerFeatureTransformer(net, cache=None).fit(X)
    with pytest.raises(TypeError, match="dask array"):
        sld.transform(lft, X)
    with pytest.raises(ValueError, match="chunked along axis 0 only"):
        sld.transform(lft, da.from_array(X, chunks=(30, 2)))
    with pytest.raises(ValueError, match="sample axis"):
        sld.transform(lft, da.from_array(X[:, 0], chunks=30))


def test_missing_dask_names_the_extra(net, data, monkeypatch):
    X, _ = data
    lft = LayerFeatureTransformer(net, cache=None).fit(X)
    monkeypatch.setitem(sys.modules, "dask", None)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r"sklearn-layers\[dask\]"):
        sld.transform(lft, X)


# --- GridSearchCV under joblib backends -------------------------------------------


def _grid(model, cache=None):
    pipe = Pipeline(
        [
            ("features", LayerFeatureTransformer(model, cache=cache)),
            ("head", LogisticRegression(max_iter=500)),
        ]
    )
    return GridSearchCV(pipe, {"features__layers": ["1", "3", "penultimate"]}, cv=3)


# Mean fold accuracies are averages of multiples of 1/30 computed by the same
# code, so equal predictions give bit-equal scores, and one flipped prediction
# moves a score by 1/90, which no rounding tolerance would absorb: compare them
# exactly.
@pytest.fixture(scope="module")
def sequential_scores():
    X = np.random.default_rng(0).normal(size=(90, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 0.8).astype(int)
    grid = _grid(make_mlp()).set_params(n_jobs=1).fit(X, y)
    return grid.cv_results_["mean_test_score"]


@pytest.mark.parametrize("backend", ["loky", "threading", "dask"])
def test_grid_search_backends_equal_sequential(
    backend, request, data, sequential_scores
):
    if backend == "dask":
        request.getfixturevalue("client")
    X, y = data
    with joblib.parallel_backend(backend):
        grid = _grid(make_mlp()).set_params(n_jobs=2).fit(X, y)
    assert_array_equal(grid.cv_results_["mean_test_score"], sequential_scores)


def test_grid_search_dask_with_frozen_model(client, tmp_path, data, sequential_scores):
    X, y = data
    handle = FrozenModel.from_module(make_mlp(), tmp_path / "mlp.pt", factory=make_mlp)
    with joblib.parallel_backend("dask"):
        grid = _grid(handle).set_params(n_jobs=2).fit(X, y)
    assert_array_equal(grid.cv_results_["mean_test_score"], sequential_scores)


def _entries(root):
    # every stored value by its key: a rewrite or a second entry would show
    import sqlite3

    db = sqlite3.connect(root / "activations.sqlite")
    try:
        return {(model, layer, row): value for model, layer, row, value in
                db.execute("SELECT model, layer, row, value FROM rows").fetchall()}
    finally:
        db.close()


def test_disk_cache_is_shared_by_worker_processes(
    client, tmp_path, data, sequential_scores
):
    X, y = data
    cache = tmp_path / "cache"
    net = make_mlp()
    with joblib.parallel_backend("dask"):
        first = _grid(net, cache=str(cache)).set_params(n_jobs=2).fit(X, y)
    written = _entries(cache)
    assert len({key[2] for key in written}) == len(X)  # every distinct row, once
    assert_array_equal(first.cv_results_["mean_test_score"], sequential_scores)

    # a second grid on the workers: every row is a hit, nothing is (re)written
    with joblib.parallel_backend("dask"):
        second = _grid(net, cache=str(cache)).set_params(n_jobs=2).fit(X, y)
    assert _entries(cache) == written
    assert_array_equal(second.cv_results_["mean_test_score"], sequential_scores)

    # and the parent process reads what the workers wrote, exactly
    _clear_loaded()
    fresh = LayerFeatureTransformer(net, layers="all", cache=None).fit_transform(X)
    reader = LayerFeatureTransformer(net, layers="all", cache=str(cache))
    served = reader.fit_transform(X)
    assert _entries(cache) == written
    # workers computed the rows in their folds' batches: float32 rounding apart
    same_features(net, X, reader.layer_names_, served, fresh)


def test_ray_backend_equals_sequential(data, sequential_scores):
    ray_joblib = pytest.importorskip("ray.util.joblib")
    ray = pytest.importorskip("ray")
    ray_joblib.register_ray()
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        X, y = data
        with joblib.parallel_backend("ray"):
            grid = _grid(make_mlp()).set_params(n_jobs=2).fit(X, y)
    finally:
        ray.shutdown()
    assert_array_equal(grid.cv_results_["mean_test_score"], sequential_scores)
