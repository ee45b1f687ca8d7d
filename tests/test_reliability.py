"""Reliability: bad input, many threads, and faults in the disk cache.

Every bad input gets either a clear ValueError/TypeError naming the problem or
the correct answer -- never a torch stack trace, a silently wrong answer, a
corrupted cache entry or a changed model.
"""

import functools
import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_array_equal
from torch import nn

from sklearn_layers import (
    DiskCache,
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    MemoryCache,
)
from sklearn_layers.utils.toy import make_mlp

from _float32 import same_features
from _helpers import assert_unchanged, snapshot

LAYERS = ["1", "3"]
N_FEATURES = 4


def _train_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, N_FEATURES))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5).astype(int)
    return X, y


@functools.cache
def fitted():
    """One network, one plain and one cached transformer, one ILC (built once)."""
    net = make_mlp()
    X, y = _train_data()
    lft = LayerFeatureTransformer(net, layers=LAYERS, cache=None).fit(X)
    cached = LayerFeatureTransformer(net, layers=LAYERS, cache=MemoryCache()).fit(X)
    ilc = IntermediateLayerClassifier(LayerFeatureTransformer(net, cache=None),
                                      layers=LAYERS, cv=2).fit(X, y)
    return net, lft, cached, ilc


# --- the bad-input matrix, by hypothesis ----------------------------------------

DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.int64,
    np.int32,
    np.uint8,
    np.bool_,
    np.complex128,
    object,
]
LAYOUTS = ["plain", "fortran", "read_only", "strided", "list"]


@st.composite
def inputs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n_rows = draw(st.integers(0, 5))
    n_cols = draw(
        st.sampled_from([N_FEATURES, N_FEATURES, N_FEATURES - 1, N_FEATURES + 1])
    )
    if dtype in (np.float64, object, np.complex128):
        elements = st.floats(allow_nan=True, allow_infinity=True, width=64)
        base = np.float64
    elif dtype in (np.float32, np.float16):
        elements = st.floats(allow_nan=True, allow_infinity=True, width=16)
        base = np.float16
    elif dtype is np.bool_:
        elements, base = st.booleans(), np.bool_
    else:
        elements, base = st.integers(0, 200), np.int64
    values = draw(hnp.arrays(base, (n_rows, n_cols), elements=elements))
    X = values.astype(dtype)
    layout = draw(st.sampled_from(LAYOUTS))
    if layout == "fortran":
        X = np.asfortranarray(X)
    elif layout == "read_only":
        X = X.copy()
        X.flags.writeable = False
    elif layout == "strided":
        wide = np.repeat(X, 2, axis=1)
        X = wide[:, ::2]
        assert not X.flags.c_contiguous or X.size == 0
    elif layout == "list":
        X = X.tolist()
    return X, values


def expected_problem(values, dtype_of_X):
    """A regex of the problems the error may name, or None: the answer must be right."""
    problems = []
    if values.shape[0] == 0:
        problems += ["0 sample", "Expected 2D array"]  # an empty list is 1-D
    if values.shape[1] != N_FEATURES:
        problems.append(f"{values.shape[1]} features")
    if dtype_of_X == np.complex128:
        problems.append("[Cc]omplex")
    as_float = values.astype(np.float64)
    if not np.isfinite(as_float).all():
        problems.append("NaN|infinity")
    else:
        with np.errstate(over="ignore"):
            overflows = np.isinf(as_float.astype(np.float32)).any()
        if overflows:
            problems.append("overflow")
    return "|".join(problems) or None


def run_case(call, X, values, dtype):
    problem = expected_problem(values, dtype)
    if problem is not None:
        with pytest.raises((ValueError, TypeError), match=problem):
            call(X)
        return None
    return call(X), values.astype(np.float64).astype(np.float32)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=inputs())
def test_transformer_bad_input_matrix(case):
    X, values = case
    net, lft, cached, _ = fitted()
    before = snapshot(net)
    n_entries = len(cached.cache)
    result = run_case(lft.transform, X, values, _dtype_of(case))
    if result is None:
        # an error stores nothing in the cache
        with pytest.raises((ValueError, TypeError)):
            cached.transform(X)
        assert len(cached.cache) == n_entries
    else:
        got, reference = result
        assert got.dtype == np.float32 and got.shape == (
            len(values),
            lft.n_features_out_,
        )
        assert_array_equal(got, lft.transform(reference))
        # a cached row may have been computed in another batch (an earlier
        # example's): equal up to the rounding of float32 sums of its size
        same_features(net, reference, LAYERS, cached.transform(X), got)
    assert_unchanged(net, before)


def _dtype_of(case):
    X, _ = case
    if isinstance(X, list):
        # a list of Python numbers: complex stays complex, the rest is numeric
        flat = [v for row in X for v in row]
        if any(isinstance(v, complex) for v in flat):
            return np.complex128
        return np.float64
    return X.dtype.type if X.dtype != object else object


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=inputs())
def test_classifier_bad_input_matrix(case):
    X, values = case
    net, _, _, ilc = fitted()
    before = snapshot(net)
    result = run_case(ilc.predict_proba, X, values, _dtype_of(case))
    if result is not None:
        got, reference = result
        assert got.shape == (len(values), len(ilc.classes_))
        assert_array_equal(got, ilc.predict_proba(reference))
        assert_array_equal(ilc.predict(X), ilc.predict(reference))
    assert_unchanged(net, before)


# --- the rest of the matrix, case by case -----------------------------------------


@pytest.mark.parametrize("method", ["transform", "predict"])
def test_sparse_input_is_a_clear_error(method):
    _, lft, _, ilc = fitted()
    estimator = lft if method == "transform" else ilc
    with pytest.raises(TypeError, match="Sparse data"):
        getattr(estimator, method)(sp.csr_matrix(np.ones((3, N_FEATURES))))


def test_strings_and_scalars_are_clear_errors():
    _, lft, _, ilc = fitted()
    for bad in (np.array([["a"] * N_FEATURES] * 2, dtype=object), "abc", 3.0):
        for call in (lft.transform, ilc.predict):
            with pytest.raises((ValueError, TypeError)):
                call(bad)


def test_one_sample():
    X, _ = _train_data()
    net, lft, _, ilc = fitted()
    same_features(net, X[:1], LAYERS, lft.transform(X[:1]), lft.transform(X)[:1])
    assert ilc.predict(X[:1]).shape == (1,)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8"])
def test_bad_batch_size(batch_size):
    X, _ = _train_data()
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        LayerFeatureTransformer(make_mlp(), batch_size=batch_size).fit(X)
    with pytest.raises((ValueError, TypeError), match="batch_size"):
        extractor = LayerFeatureTransformer(make_mlp(), batch_size=batch_size)
        IntermediateLayerClassifier(extractor).fit(
            X, _train_data()[1]
        )


def test_huge_batch_size_is_one_batch():
    X, _ = _train_data()
    net, lft, _, _ = fitted()
    huge = LayerFeatureTransformer(
        net, layers=LAYERS, cache=None, batch_size=10**12
    ).fit(X)
    assert_array_equal(huge.transform(X), lft.transform(X))
    ones = LayerFeatureTransformer(net, layers=LAYERS, cache=None, batch_size=1).fit(X)
    same_features(net, X, LAYERS, ones.transform(X), lft.transform(X))


@pytest.mark.parametrize(
    "layers, match",
    [
        ("nope", r"Unknown layer 'nope'.*Blocks"),
        (7, "out of range"),
        (["1", "1"], "more than once"),
        (["3", -2], "more than once"),
        ([], "at least one layer"),
        ([1.5], "str or an int"),
    ],
)
def test_bad_layers(layers, match):
    X, y = _train_data()
    net = make_mlp()
    before = snapshot(net)
    with pytest.raises((ValueError, TypeError), match=match):
        LayerFeatureTransformer(net, layers=layers).fit(X)
    with pytest.raises((ValueError, TypeError), match=match):
        IntermediateLayerClassifier(net, layers=layers, cv=2).fit(X, y)
    assert_unchanged(net, before)


@pytest.mark.parametrize(
    "X, y, match",
    [
        (np.full((6, N_FEATURES), np.nan), [0, 1] * 3, "NaN"),
        (np.empty((0, N_FEATURES)), [], "0 sample|at least 2 classes"),
        (np.ones((1, N_FEATURES)), [0], "at least 2 classes"),
        (np.ones((6, N_FEATURES)), [1] * 6, "at least 2 classes"),
        (np.ones((6, N_FEATURES)), [0, 1] * 4, "samples"),
        (
            np.ones((6, N_FEATURES)),
            [0.5, 1.5, 0.1, 0.2, 0.3, 0.4],
            "Unknown label type",
        ),
        (np.ones((6, N_FEATURES), dtype=complex), [0, 1] * 3, "[Cc]omplex"),
        (sp.csr_matrix(np.ones((6, N_FEATURES))), [0, 1] * 3, "Sparse data"),
    ],
)
def test_classifier_bad_fit_input(X, y, match):
    net = make_mlp()
    before = snapshot(net)
    with pytest.raises((ValueError, TypeError), match=match):
        IntermediateLayerClassifier(LayerFeatureTransformer(net, cache=None), layers=LAYERS,
                                    cv=2).fit(X, y)
    assert_unchanged(net, before)


class Exploding(nn.Module):
    """Runs its first block, then raises from inside the forward pass."""

    def __init__(self):
        super().__init__()
        self.first = nn.Linear(N_FEATURES, 6)
        self.second = nn.Linear(6, 3)

    def forward(self, x):
        hidden = self.first(x)
        raise RuntimeError("the model's own failure")
        return self.second(hidden)  # pragma: no cover


@pytest.mark.parametrize("cache", [None, "memory-object"])
def test_forward_that_raises_leaves_no_trace(cache):
    X, y = _train_data()
    net = Exploding().train()
    before = snapshot(net)
    memory = MemoryCache() if cache else None
    # "first" alone exits early, before the failure: that works
    ok = LayerFeatureTransformer(net, layers="first", cache=None).fit_transform(X)
    assert ok.shape == (len(X), 6)
    for layers in ("second", ["first", "second"]):
        with pytest.raises(RuntimeError, match="the model's own failure") as info:
            LayerFeatureTransformer(net, layers=layers, cache=memory).fit(X)
        assert "no hook was left" in "".join(getattr(info.value, "__notes__", []))
        assert_unchanged(net, before)
    with pytest.raises(RuntimeError, match="the model's own failure"):
        IntermediateLayerClassifier(LayerFeatureTransformer(net, cache=memory),
                                    layers=["second"], cv=2).fit(
            X, y
        )
    assert_unchanged(net, before)
    assert net.training
    if memory is not None:
        assert len(memory) == 0  # nothing half-computed was stored


# --- thread safety under load -------------------------------------------------------

LAYER_SETS = [["1"], ["3"], ["1", "3"], ["penultimate", "1"]]


@pytest.mark.parametrize("use_cache", [False, True])
def test_many_threads_equal_sequential(use_cache):
    net = make_mlp()
    X = np.random.default_rng(1).normal(size=(50, N_FEATURES)).astype(np.float32)
    before = snapshot(net)
    reference = [
        LayerFeatureTransformer(net, layers=layers, cache=None).fit(X).transform(X)
        for layers in LAYER_SETS
    ]
    cache = MemoryCache() if use_cache else None
    transformers = [
        LayerFeatureTransformer(net, layers=layers, cache=cache, batch_size=16).fit(X)
        for layers in LAYER_SETS
    ]
    names = [t.layer_names_ for t in transformers]
    orders = [np.random.default_rng(s).permutation(len(X)) for s in range(20)]
    errors, barrier = [], threading.Barrier(8)

    def work(t):
        try:
            barrier.wait()
            which = t % len(LAYER_SETS)
            for i in range(20):
                rows = orders[(t + i) % len(orders)]
                got = transformers[which].transform(X[rows])
                same_features(
                    net, X[rows], names[which], got, reference[which][rows]
                )
        except Exception as exc:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]
    assert_unchanged(net, before)


# --- fault injection on the disk cache ----------------------------------------------


def _stored_rows(root):
    import sqlite3

    db = sqlite3.connect(root / "activations.sqlite")
    try:
        return db.execute("SELECT count(*) FROM rows").fetchone()[0]
    finally:
        db.close()


def _write_half_then_hang(path, X, ready):
    """In the child: the first cache write stops half-way through its batch, then hangs."""
    import sqlite3

    real_executemany = sqlite3.Connection.executemany

    class Halting(sqlite3.Connection):
        def executemany(self, sql, rows):
            rows = list(rows)
            if sql.startswith("INSERT"):
                real_executemany(self, sql, rows[: len(rows) // 2])
                ready.set()
                time.sleep(300)
            return real_executemany(self, sql, rows)

    real_connect = sqlite3.connect
    sqlite3.connect = lambda *a, **k: real_connect(*a, factory=Halting, **k)
    LayerFeatureTransformer(
        make_mlp(), layers="3", cache=DiskCache(path)
    ).fit_transform(X)


def test_writer_killed_mid_write_loses_nothing(tmp_path):
    X, _ = _train_data()
    expected = LayerFeatureTransformer(
        make_mlp(), layers="3", cache=None
    ).fit_transform(X)
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_write_half_then_hang, args=(tmp_path, X, ready))
    child.start()
    try:
        assert ready.wait(60), "the child never started writing"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(30)
    assert child.exitcode == -signal.SIGKILL
    assert _stored_rows(tmp_path) == 0  # the half-written batch never became entries

    # a fresh DiskCache object (its in-memory front is empty) reads the database
    cache = DiskCache(tmp_path)
    got = LayerFeatureTransformer(make_mlp(), layers="3", cache=cache).fit_transform(X)
    same_features(make_mlp(), X, ["3"], got, expected)
    again = DiskCache(tmp_path)
    served = LayerFeatureTransformer(make_mlp(), layers="3", cache=again).fit_transform(X)
    assert again.n_rows_computed == 1  # fit's own row: everything else from disk
    same_features(make_mlp(), X, ["3"], served, expected)


def test_full_disk_warns_and_returns_correct_features(tmp_path):
    X, _ = _train_data()
    expected = LayerFeatureTransformer(
        make_mlp(), layers="3", cache=None
    ).fit_transform(X)
    cache = DiskCache(tmp_path)
    cache.store("fp", {"l": np.ones((1, 2))}, [b"r" * 16])
    cache._connection().execute("PRAGMA max_page_count = 1")  # no page left to grow into
    with pytest.warns(RuntimeWarning, match="full"):
        got = LayerFeatureTransformer(make_mlp(), layers="3", cache=cache).fit_transform(X)
    same_features(make_mlp(), X, ["3"], got, expected)

    fresh = DiskCache(tmp_path)  # space again: entries get written
    again = LayerFeatureTransformer(make_mlp(), layers="3", cache=fresh).fit_transform(X)
    same_features(make_mlp(), X, ["3"], again, expected)
    assert _stored_rows(tmp_path) > len(X)