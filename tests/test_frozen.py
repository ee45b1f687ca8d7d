import copy
import functools
import gc
import os
import pickle
import threading
import weakref

import joblib
import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_layers import (
    FrozenModel,
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    _frozen,
    layer_sweep,
)
from sklearn_layers._extraction._models import resolve_module
from sklearn_layers._frozen import _clear_loaded
from sklearn_layers.utils.toy import make_mlp

from _float32 import same_features

CALLS = {"n": 0}


def counting_mlp():
    """make_mlp() that counts how often the architecture is built."""
    CALLS["n"] += 1
    return make_mlp()


def mlp_with(activation):
    """make_mlp's architecture and parameter names with another activation."""
    net = make_mlp()
    for i, layer in enumerate(net):
        if isinstance(layer, nn.ReLU):
            net[i] = activation()
    return net


tanh_mlp = functools.partial(mlp_with, nn.Tanh)


class NoArgNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.lin = nn.Linear(4, width)

    def forward(self, x):
        return self.lin(x)


class WithNonPersistentBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.register_buffer("offset", torch.full((3,), 0.5), persistent=False)

    def forward(self, x):
        return self.lin(x) + self.offset


@pytest.fixture(autouse=True)
def _fresh_process_cache():
    _clear_loaded()
    yield
    _clear_loaded()


@pytest.fixture
def net():
    return make_mlp()


@pytest.fixture
def handle(net, tmp_path):
    return FrozenModel.from_module(net, tmp_path / "mlp.pt", factory=make_mlp)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def test_pickles_to_a_few_hundred_bytes(handle):
    assert len(pickle.dumps(handle)) < 1024
    # the estimator around it stays small too: this is what travels per task
    lft = LayerFeatureTransformer(handle, layers="3")
    assert len(pickle.dumps(lft)) < 2048
    restored = pickle.loads(pickle.dumps(handle))
    assert restored == handle and restored.sha256 == handle.sha256


def test_joblib_hash_is_stable(handle, net, tmp_path):
    again = FrozenModel(make_mlp, handle.weights)
    relative = FrozenModel(make_mlp, os.path.relpath(handle.weights))
    assert joblib.hash(handle) == joblib.hash(again) == joblib.hash(relative)
    assert joblib.hash(pickle.loads(pickle.dumps(handle))) == joblib.hash(handle)
    _ = handle.module  # loading changes nothing that is hashed
    assert joblib.hash(handle) == joblib.hash(again)
    lft = LayerFeatureTransformer(handle, layers="3")
    assert joblib.hash(clone(lft)) == joblib.hash(lft)
    # other weights, other hash
    other = make_mlp(seed=1)
    other_handle = FrozenModel.from_module(
        other, tmp_path / "other.pt", factory=make_mlp
    )
    assert joblib.hash(other_handle) != joblib.hash(handle)


def test_shared_by_reference(handle):
    assert copy.deepcopy(handle) is handle
    assert copy.copy(handle) is handle
    lft = LayerFeatureTransformer(handle, layers="3")
    assert clone(lft).model is handle
    assert clone(IntermediateLayerClassifier(handle)).extractor is handle
    assert resolve_module(handle) is handle.module


def test_loads_once_per_process(net, tmp_path, data):
    X, _ = data
    handle = FrozenModel.from_module(net, tmp_path / "mlp.pt", factory=counting_mlp)
    CALLS["n"] = 0
    copies = [pickle.loads(pickle.dumps(handle)) for _ in range(3)]
    copies.append(FrozenModel(counting_mlp, handle.weights))
    modules = [c.module for c in copies] + [handle.module]
    assert all(m is modules[0] for m in modules)
    for _ in range(3):
        LayerFeatureTransformer(
            pickle.loads(pickle.dumps(handle)), layers="3"
        ).fit_transform(X)
    assert CALLS["n"] == 1

    # many threads asking at once for a handle not yet loaded: still one load
    _clear_loaded()
    CALLS["n"] = 0
    barrier = threading.Barrier(6)
    seen = []

    def load():
        barrier.wait()
        seen.append(pickle.loads(pickle.dumps(handle)).module)

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CALLS["n"] == 1 and len(seen) == 6 and all(m is seen[0] for m in seen)


def test_loaded_module_is_frozen_on_cpu_with_the_weights(handle, net):
    module = handle.module
    assert not module.training
    assert not any(p.requires_grad for p in module.parameters())
    assert not any(t.is_meta for t in module.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(module.state_dict()[key], value), key
    # the user's network is untouched by from_module
    assert net[0].weight.requires_grad


@pytest.mark.parametrize("cache", [None, "memory"])
def test_same_features_as_the_raw_module(handle, net, data, cache):
    X, _ = data
    raw = LayerFeatureTransformer(net, layers="all", cache=None).fit_transform(X)
    lft = LayerFeatureTransformer(handle, layers="all", cache=cache)
    got = lft.fit_transform(X)
    if cache is None:
        assert_array_equal(got, raw)
    else:  # row 0 was cached by fit's one-row probe, in a batch of its own
        same_features(net, X, lft.layer_names_, got, raw)


def test_accepted_by_ilc_and_layer_sweep(handle, net, data):
    X, y = data
    params = {"layers": ["1", "3"], "cv": 2}
    a = IntermediateLayerClassifier(LayerFeatureTransformer(net, cache=None), **params)
    b = IntermediateLayerClassifier(LayerFeatureTransformer(handle, cache=None), **params)
    a.fit(X, y)
    b.fit(X, y)
    assert a.layer_scores_ == b.layer_scores_
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    raw_rows = _rows(layer_sweep(LayerFeatureTransformer(net, cache=None), X, y, **params))
    handle_rows = _rows(layer_sweep(LayerFeatureTransformer(handle, cache=None), X, y,
                                    **params))
    assert len(raw_rows) == 2
    assert [r["score"] for r in raw_rows] == [r["score"] for r in handle_rows]


def _rows(table):
    if hasattr(table, "to_dict"):
        return table.to_dict("records")
    return list(table)


def _swap_weights(path, seed):
    """Replace the file with other weights (a new inode, as a careful writer does)."""
    tmp = f"{path}.new"
    torch.save(make_mlp(seed=seed).state_dict(), tmp)
    os.replace(tmp, path)


def test_changed_weights_file_is_a_clear_error(handle, data):
    X, _ = data
    _swap_weights(handle.weights, seed=3)
    with pytest.raises(ValueError, match="changed since this FrozenModel was made"):
        _ = handle.module
    # a handle unpickled in another process would fail the same way, at fit
    travelled = pickle.loads(pickle.dumps(handle))
    with pytest.raises(ValueError, match="changed since"):
        LayerFeatureTransformer(travelled, layers="3").fit(X)


def test_file_changed_after_loading_is_detected(handle):
    _ = handle.module
    _swap_weights(handle.weights, seed=4)
    with pytest.raises(ValueError, match="changed since"):
        _ = handle.module


def test_touched_file_with_same_bytes_keeps_the_loaded_module(handle):
    module = handle.module
    st = os.stat(handle.weights)
    os.utime(handle.weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert handle.module is module


def test_missing_file_and_bad_hash(tmp_path, handle):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FrozenModel(make_mlp, tmp_path / "nope.pt")
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        FrozenModel(make_mlp, handle.weights, sha256="abc")
    wrong = FrozenModel(make_mlp, handle.weights, sha256="0" * 64)
    with pytest.raises(ValueError, match="changed since"):
        _ = wrong.module
    gone = FrozenModel(make_mlp, tmp_path / "gone.pt", sha256=handle.sha256)
    with pytest.raises(ValueError, match="shared filesystem"):
        _ = gone.module


def test_torch_load_reads_a_private_copy_with_weights_only(handle, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(source, **kwargs):
        calls.append((source, kwargs))
        return real_load(source, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    _ = handle.module
    assert len(calls) == 1
    source, kwargs = calls[0]
    assert kwargs.get("weights_only") is True
    assert os.fspath(source) != handle.weights if isinstance(source, str) else True
    if hasattr(os, "memfd_create"):  # the tensors map the private copy itself
        assert kwargs.get("mmap") is True and source.startswith("/proc/self/fd/")


class _Payload:
    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return "pwned"


def test_a_weights_file_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"0.weight": _Payload()}, path)
    handle = FrozenModel(make_mlp, path)
    with pytest.raises(ValueError, match="other than tensors") as info:
        _ = handle.module
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)
    assert not _Payload.ran


def test_architecture_mismatch_is_a_clear_error(handle, net, tmp_path):
    wide = functools.partial(make_mlp, hidden=(32, 8))
    with pytest.raises(ValueError, match="does not rebuild"):
        FrozenModel.from_module(net, tmp_path / "x.pt", factory=wide)
    with pytest.raises(ValueError, match="do not fit the architecture"):
        _ = FrozenModel(wide, handle.weights).module


def test_factory_defaults_to_the_class(tmp_path, data):
    X, _ = data
    net = NoArgNet()
    handle = FrozenModel.from_module(net, tmp_path / "n.pt")
    assert handle.factory is NoArgNet
    assert_array_equal(
        LayerFeatureTransformer(handle, layers="body", cache=None).fit_transform(X),
        LayerFeatureTransformer(net, layers="body", cache=None).fit_transform(X),
    )
    with pytest.raises(TypeError, match="cannot be called without arguments"):
        FrozenModel.from_module(NeedsArgs(3), tmp_path / "a.pt")
    # callable without arguments, but not this architecture
    with pytest.raises(ValueError, match="does not rebuild"):
        FrozenModel.from_module(make_mlp(), tmp_path / "s.pt")


def test_factory_must_be_importable(tmp_path, net):
    def local_factory():
        return make_mlp()

    with pytest.raises(TypeError, match="pickled by reference"):
        FrozenModel.from_module(net, tmp_path / "l.pt", factory=local_factory)
    with pytest.raises(TypeError, match="pickled by reference"):
        FrozenModel(lambda: net, tmp_path / "l.pt")
    with pytest.raises(TypeError, match="callable"):
        FrozenModel("make_mlp", tmp_path / "l.pt")


def test_non_persistent_buffers_are_rebuilt(tmp_path, data):
    X, _ = data
    net = WithNonPersistentBuffer()
    handle = FrozenModel.from_module(net, tmp_path / "b.pt")
    assert torch.equal(handle.module.offset, net.offset)
    assert_array_equal(  # the same weights and batches: the same float32 operations
        LayerFeatureTransformer(handle, layers="output", cache=None).fit_transform(X),
        LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(X),
    )


def test_repr_names_factory_and_file(handle):
    text = repr(handle)
    assert "make_mlp" in text and "mlp.pt" in text


def test_grid_search_loky_equals_sequential(handle, data):
    X, y = data
    pipe = Pipeline(
        [
            ("features", LayerFeatureTransformer(handle, cache=None)),
            ("head", LogisticRegression(max_iter=500)),
        ]
    )
    grid = {"features__layers": ["1", "3", "penultimate"]}
    sequential = GridSearchCV(pipe, grid, cv=3, n_jobs=1).fit(X, y)
    with joblib.parallel_backend("loky"):
        parallel = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X, y)
    # every row runs in the same batches in every process: the same features,
    # fits and fold accuracies, averaged by the same code
    assert_array_equal(
        parallel.cv_results_["mean_test_score"],
        sequential.cv_results_["mean_test_score"],
    )
    assert parallel.best_params_ == sequential.best_params_


# --- what a loaded module is keyed by -------------------------------------------


def test_factory_is_part_of_the_key(handle, net, data):
    X, _ = data
    relu = handle.module
    tanh = FrozenModel(tanh_mlp, handle.weights).module
    assert isinstance(relu[1], nn.ReLU) and isinstance(tanh[1], nn.Tanh)
    for key, value in net.state_dict().items():
        assert torch.equal(tanh.state_dict()[key], value), key
    # a partial is identified by its function and arguments, not by the object
    again = functools.partial(mlp_with, nn.Tanh)
    assert again is not tanh_mlp
    assert FrozenModel(again, handle.weights).module is tanh
    assert FrozenModel(again, handle.weights) == FrozenModel(tanh_mlp, handle.weights)
    sigmoid = FrozenModel(functools.partial(mlp_with, nn.Sigmoid), handle.weights)
    assert isinstance(sigmoid.module[1], nn.Sigmoid)
    assert sigmoid != FrozenModel(tanh_mlp, handle.weights)

    with torch.no_grad():
        expected = net[0](torch.as_tensor(X)).tanh().numpy()
    got = LayerFeatureTransformer(
        FrozenModel(tanh_mlp, handle.weights), layers="1", cache=None
    ).fit_transform(X)
    assert_array_equal(got, expected)


# --- the loaded weights are a verified private copy -------------------------------


@pytest.mark.parametrize("copy", ["memory file", "buffer"])
def test_overwriting_the_file_in_place_after_fit_changes_no_feature(
    copy, handle, data, tmp_path, monkeypatch
):
    if copy == "buffer":  # where memfd_create is missing or forbidden
        monkeypatch.setattr(_frozen, "_memory_file", lambda: None)
    X, _ = data
    lft = LayerFeatureTransformer(handle, layers="3", cache=None).fit(X)
    before = lft.transform(X)
    (tmp_path / "other").mkdir()
    other = FrozenModel.from_module(
        make_mlp(seed=5), tmp_path / "other" / "mlp.pt", factory=make_mlp
    )
    new_bytes = open(other.weights, "rb").read()
    assert len(new_bytes) == os.path.getsize(handle.weights)
    with open(handle.weights, "r+b") as file:  # same inode: pages mapped from it change
        file.write(new_bytes)
    assert_array_equal(lft.transform(X), before)
    with pytest.raises(ValueError, match="changed since"):
        _ = handle.module


def test_deleting_the_file_after_loading_changes_no_feature(handle, data):
    X, _ = data
    lft = LayerFeatureTransformer(handle, layers="3", cache=None).fit(X)
    before = lft.transform(X)
    os.unlink(handle.weights)
    assert_array_equal(lft.transform(X), before)


# --- files that are not a state_dict ----------------------------------------------


def _state_as_numpy(net):
    return {k: v.numpy() for k, v in net.state_dict().items()}


UNLOADABLE = {
    "random bytes": lambda net, path: path.write_bytes(
        np.random.default_rng(0).bytes(4096)
    ),
    "empty": lambda net, path: path.write_bytes(b""),
    "plain pickle": lambda net, path: path.write_bytes(
        pickle.dumps(_state_as_numpy(net))
    ),
    "saved tensor": lambda net, path: torch.save(net[0].weight.detach(), path),
    "saved list": lambda net, path: torch.save(list(net.state_dict().values()), path),
    "saved module": lambda net, path: torch.save(net, path),
}


@pytest.mark.parametrize("kind", list(UNLOADABLE))
def test_unloadable_weights_file_is_a_clear_error(kind, net, tmp_path, data):
    X, _ = data
    path = tmp_path / "weights.pt"
    UNLOADABLE[kind](net, path)
    handle = FrozenModel(make_mlp, path)
    with pytest.raises(ValueError, match="torch.save") as info:
        _ = handle.module
    message = str(info.value)
    assert str(path) in message and "state_dict" in message
    with pytest.raises(ValueError, match="state_dict"):
        LayerFeatureTransformer(handle, layers="3").fit(X)


@pytest.mark.parametrize("kind", ["random bytes", "empty", "plain pickle"])
def test_unloadable_weights_file_error_is_chained_to_torch(kind, net, tmp_path):
    path = tmp_path / "weights.pt"
    UNLOADABLE[kind](net, path)
    with pytest.raises(ValueError) as info:
        _ = FrozenModel(make_mlp, path).module
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    "sha256",
    ["z" * 64, "0" * 63, "0" * 65, " " + "0" * 63, b"0" * 64, 0, "0x" + "0" * 62],
)
def test_sha256_must_be_64_hex_digits(handle, sha256):
    with pytest.raises(ValueError, match="64 hexadecimal digits"):
        FrozenModel(make_mlp, handle.weights, sha256=sha256)


def test_sha256_in_capitals_is_accepted(handle):
    upper = FrozenModel(make_mlp, handle.weights, sha256=handle.sha256.upper())
    assert upper == handle and upper.module is handle.module


# --- nothing process-wide grows without bound ---------------------------------------


def test_dropped_handles_and_models_are_freed(handle, data):
    X, _ = data
    modules, handles, transformers = {}, [], []
    for i in range(1000):  # 1,000 handles on 100 distinct factories, in turn
        seed = i // 10
        each = FrozenModel(functools.partial(make_mlp, seed=seed), handle.weights)
        if i % 50 == 0:
            lft = LayerFeatureTransformer(each, layers="3", cache=None).fit(X)
            transformers.append(weakref.ref(lft))
            del lft
        modules.setdefault(seed, weakref.ref(each.module))
        assert modules[seed]() is each.module  # loaded once while in use
        handles.append(weakref.ref(each))
        del each
    gc.collect()
    assert not any(ref() is not None for ref in handles + transformers)
    alive = [seed for seed, ref in modules.items() if ref() is not None]
    # only the most recently used ones are kept for the next task of a worker
    assert alive == [98, 99] and _frozen._KEEP_LOADED == 2
    assert len(_frozen._LOADED.weak) == len(_frozen._LOADED.recent) == 2
    _clear_loaded()
    gc.collect()
    assert not any(ref() is not None for ref in modules.values())


def test_a_live_handle_keeps_its_module(handle, tmp_path):
    module = weakref.ref(handle.module)
    for seed in range(5):  # more recent loads push it out of the kept ones
        _ = FrozenModel(functools.partial(make_mlp, seed=seed), handle.weights).module
    gc.collect()
    assert module() is handle.module


def test_file_hashes_are_bounded(tmp_path):
    net = make_mlp()
    for i in range(3 * _frozen._KEEP_HASHES):
        path = tmp_path / f"{i}.pt"
        torch.save(net.state_dict(), path)
        FrozenModel(make_mlp, path)
    assert len(_frozen._LOADED.hashes) == _frozen._KEEP_HASHES
