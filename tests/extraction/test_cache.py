import multiprocessing

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import NearestCentroid
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from sklearn_layers import DiskCache, LayerFeatureTransformer, MemoryCache
from sklearn_layers.utils.toy import make_small_cnn

from _float32 import same_features
from _helpers import RowCounter


@pytest.fixture
def cnn():
    return make_small_cnn(n_classes=3)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 1, 12, 12)).astype(np.float32)
    y = np.arange(60) % 3
    X[y == 1] += 0.5
    return X, y


def test_grid_search_runs_each_row_through_the_network_once(cnn, data):
    X, y = data
    counter = RowCounter(cnn[0])
    pipe = Pipeline(
        [
            ("features", LayerFeatureTransformer(cnn, cache=MemoryCache(), batch_size=16)),
            ("head", NearestCentroid()),
        ]
    )
    grid = GridSearchCV(
        pipe,
        {
            "features__layers": ["2", "5", "9"],
            "head": [make_pipeline(StandardScaler(), LogisticRegression()), NearestCentroid()],
        },
        cv=3,
    )
    try:
        grid.fit(X, y)
    finally:
        counter.remove()
    assert counter.rows <= len(X) + 2, counter.rows

    # the same grid without a cache: every candidate x fold recomputes
    counter = RowCounter(cnn[0])
    try:
        grid.set_params(estimator__features__cache=None).fit(X, y)
    finally:
        counter.remove()
    assert counter.rows >= 3 * 2 * 3 * len(X) * 0.9


def test_cached_features_equal_fresh_ones(cnn, data):
    X, _ = data
    cache = MemoryCache()
    counter = RowCounter(cnn[0])
    fresh = LayerFeatureTransformer(cnn, layers="all", cache=None).fit_transform(X)
    warm = LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X[:20])
    assert warm.shape == (20, 16)
    counter.take()
    lft = LayerFeatureTransformer(cnn, layers="all", cache=cache)
    got = lft.fit_transform(X)
    counter.remove()
    assert counter.rows == len(X) - 20  # earlier rows were hits, for every block
    # hits were computed in other batches: equal up to float32 rounding
    same_features(cnn, X, lft.layer_names_, got, fresh)


def test_fully_cached_request_runs_no_forward(cnn, data):
    X, _ = data
    cache = MemoryCache()
    counter = RowCounter(cnn[0])
    lft = LayerFeatureTransformer(cnn, layers="9", cache=cache).fit(X)
    first = lft.transform(X)
    counter.take()
    second = lft.transform(X)
    LayerFeatureTransformer(cnn, layers=["2", "5"], cache=cache).fit_transform(X)
    counter.remove()
    assert counter.rows == 0
    assert_array_equal(first, second)


def test_in_place_weight_change_is_never_served_stale(cnn, data):
    X, _ = data
    cache = MemoryCache()
    lft = LayerFeatureTransformer(cnn, layers="5", cache=cache).fit(X)
    before = lft.transform(X)
    with torch.no_grad():
        cnn[3].weight.mul_(2.0)
    after = lft.transform(X)
    fresh = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    assert not np.allclose(before, after)
    same_features(cnn, X, ["5"], after, fresh)


def test_pooling_is_part_of_the_key(cnn, data):
    X, _ = data
    cache = MemoryCache()
    mean = LayerFeatureTransformer(cnn, layers="5", pooling="mean", cache=cache).fit_transform(X)
    mx = LayerFeatureTransformer(cnn, layers="5", pooling="max", cache=cache).fit_transform(X)
    assert not np.allclose(mean, mx)
    fresh = LayerFeatureTransformer(cnn, layers="5", pooling="max", cache=None)
    same_features(cnn, X, ["5"], mx, fresh.fit_transform(X), pooling="max")


def test_memory_cache_stays_within_its_bound(cnn, data):
    X, _ = data
    cache = MemoryCache(max_bytes=20_000)
    fresh = LayerFeatureTransformer(cnn, layers="all", cache=None).fit_transform(X)
    lft = LayerFeatureTransformer(cnn, layers="all", cache=cache)
    got = lft.fit_transform(X)
    assert 0 < cache.nbytes <= 20_000
    same_features(cnn, X, lft.layer_names_, got, fresh)


def test_memory_cache_evicts_least_recently_used():
    probe = MemoryCache()
    probe.store("fp", {"l": np.zeros((4, 2))}, [bytes([i]) for i in range(4)])
    cache = MemoryCache(max_bytes=probe.nbytes - 1)  # one row too small for four
    for i in range(3):
        cache.store("fp", {"l": np.full((1, 2), i)}, [bytes([i])])
    cache.lookup("fp", ["l"], [bytes([0])])  # row 0 is now the most recent
    cache.store("fp", {"l": np.full((1, 2), 3)}, [bytes([3])])
    found = cache.lookup("fp", ["l"], [bytes([i]) for i in range(4)])["l"]
    assert found[1] is None and found[0] is not None and found[3] is not None


def test_served_rows_are_read_only():
    cache = MemoryCache()
    cache.store("fp", {"l": np.ones((1, 3))}, [b"r"])
    row = cache.lookup("fp", ["l"], [b"r"])["l"][0]
    with pytest.raises(ValueError):
        row[0] = 5.0


def test_memory_cache_pickles_empty_with_its_bound():
    import pickle

    cache = MemoryCache(max_bytes=1234)
    cache.store("fp", {"l": np.ones((2, 3))}, [b"a", b"b"])
    restored = pickle.loads(pickle.dumps(cache))
    assert restored.max_bytes == 1234 and len(restored) == 0


def test_disk_cache_is_shared_and_exact(cnn, data, tmp_path):
    X, _ = data
    counter = RowCounter(cnn[0])
    fresh = LayerFeatureTransformer(cnn, layers=["2", "9"], cache=None).fit_transform(X)
    first = LayerFeatureTransformer(cnn, layers=["2", "9"], cache=tmp_path).fit_transform(X)
    counter.take()
    # a new DiskCache object without a memory front: only the directory is shared
    second = LayerFeatureTransformer(
        cnn, layers=["5", "2"], cache=DiskCache(tmp_path, memory_bytes=0)
    ).fit_transform(X)
    counter.remove()
    # fit computes its first row: widths never come from a file someone else wrote
    assert counter.rows == 1
    same_features(cnn, X, ["2", "9"], first, fresh)
    assert_array_equal(second[:, 16:], first[:, :8])


def _entry_files(root):
    return sorted(p for p in root.rglob("*.npz") if not p.name.startswith(".tmp"))


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:100] + bytes(len(b) - 100),  # zeroed tail
        lambda b: b"\x00" * len(b),  # garbage
        lambda b: b"",  # empty
    ],
)
def test_corrupt_disk_entries_are_recomputed_never_served(cnn, data, tmp_path, damage):
    # memory_bytes=0: no in-memory front, every lookup reads the files, as a
    # different process would
    X, _ = data
    counter = RowCounter(cnn[0])
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, 0)).fit_transform(X)
    files = _entry_files(tmp_path)
    for f in files[::3]:
        f.write_bytes(damage(f.read_bytes()))
    counter.take()
    got = LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, 0)).fit_transform(X)
    same_features(cnn, X, ["5"], got, expected)
    assert counter.take() >= len(files[::3])
    # rewritten: a third pass is all hits (fit computes its first row)
    LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, 0)).fit_transform(X)
    counter.remove()
    assert counter.rows == 1


def test_same_directory_shares_one_disk_cache_per_process(tmp_path):
    from sklearn_layers._extraction._cache import make_cache

    assert make_cache(tmp_path) is make_cache(str(tmp_path))
    assert make_cache(tmp_path) is not make_cache(tmp_path / "other")


def test_disk_cache_never_unpickles(tmp_path):
    cache = DiskCache(tmp_path, memory_bytes=0)
    digest = b"\x01" * 16
    file = cache._file("fp", digest)
    file.parent.mkdir(parents=True)
    np.savez(file, **{"6c": np.array([object()], dtype=object)})  # needs pickle to load
    found = cache.lookup("fp", ["l"], [digest])
    assert found["l"] == [None]


def test_unwritable_cache_still_returns_features_and_warns(cnn, data, tmp_path, monkeypatch):
    X, _ = data
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    cache = DiskCache(tmp_path)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sklearn_layers._extraction._cache.write_entry", full_disk)
    with pytest.warns(RuntimeWarning, match="No space left"):
        got = LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    same_features(cnn, X, ["5"], got, expected)


def test_cache_path_that_cannot_hold_files(cnn, data, tmp_path):
    # A path under a regular file cannot be created, whoever runs the test (root
    # ignores directory permission bits, so chmod is no test here).
    X, _ = data
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    with pytest.warns(RuntimeWarning, match="not cached"):
        got = LayerFeatureTransformer(cnn, layers="5", cache=blocker / "cache").fit_transform(X)
    same_features(cnn, X, ["5"], got, expected)
    assert blocker.read_text() == "not a directory"


def _write_same_entries(path, seed, n_rounds):
    cache = DiskCache(path)
    rng = np.random.default_rng(seed)
    for _ in range(n_rounds):
        value = np.full((8, 32), 1.0, dtype=np.float32)
        cache.store("fp", {"layer": value, f"extra{seed}": rng.normal(size=(8, 4))},
                    [bytes([i]) * 16 for i in range(8)])


def test_concurrent_writers_of_the_same_keys(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_same_entries, args=(tmp_path, s, 30)) for s in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    found = DiskCache(tmp_path).lookup("fp", ["layer"], [bytes([i]) * 16 for i in range(8)])
    for row in found["layer"]:
        assert row is not None
        assert_array_equal(row, np.ones(32, dtype=np.float32))
    assert not list(tmp_path.rglob(".tmp-*"))


def channel_mean(a):
    return a.mean(dim=(2, 3))


def channel_max(a):
    return a.amax(dim=(2, 3))


def test_callable_poolings_never_share_a_cache_entry(cnn, data):
    X, _ = data
    cache = MemoryCache()
    first = LayerFeatureTransformer(cnn, layers="5", pooling=lambda a: a.mean(dim=(2, 3)),
                                    cache=cache).fit_transform(X)
    second = LayerFeatureTransformer(cnn, layers="5", pooling=lambda a: a.amax(dim=(2, 3)),
                                     cache=cache).fit_transform(X)
    assert not np.allclose(first, second)
    assert len(cache) == 0  # lambdas have no stable identity: never cached
    a = LayerFeatureTransformer(cnn, layers="5", pooling=channel_mean, cache=cache)
    b = LayerFeatureTransformer(cnn, layers="5", pooling=channel_max, cache=cache)
    same_features(cnn, X, ["5"], a.fit_transform(X), first, pooling="mean")
    same_features(cnn, X, ["5"], b.fit_transform(X), second, pooling="max")
    assert len(cache) > 0  # module-level functions are keyed by name and code


def test_pooling_key_tells_functions_apart():
    from functools import partial

    from sklearn_layers._extraction._pooling import pooling_key

    assert pooling_key(channel_mean) != pooling_key(channel_max)
    assert pooling_key(channel_mean) == pooling_key(channel_mean)
    assert pooling_key(lambda a: a) is None
    assert pooling_key(partial(channel_mean)) is None
    assert pooling_key("mean") == "mean" and pooling_key(2) == "2"


def test_a_block_that_does_not_run_or_pool_never_breaks_a_request(data):
    from torch import nn

    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.unused = nn.Linear(4, 4)  # a block that never runs
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3)))

    X, _ = data
    net = Branchy()
    cache = MemoryCache()
    lft = LayerFeatureTransformer(net, layers="conv", cache=cache)
    assert "unused" in lft.fit(X).blocks_
    got = lft.transform(X)
    expected = LayerFeatureTransformer(net, layers="conv", cache=None).fit_transform(X)
    same_features(net, X, ["conv"], got, expected)
    with pytest.raises(ValueError, match="did not run"):
        LayerFeatureTransformer(net, layers="unused", cache=cache).fit(X)


def test_without_a_cache_no_row_is_hashed(cnn, data, monkeypatch):
    import sklearn_layers._extraction._inputs as inputs

    X, _ = data

    def no_hashing(arrays, names=None):
        raise AssertionError("rows were hashed although no cache is used")

    monkeypatch.setattr(inputs, "row_digests", no_hashing)
    got = LayerFeatureTransformer(cnn, layers="all", cache=None).fit_transform(X)
    assert got.shape[0] == len(X)
    with pytest.raises(AssertionError, match="hashed"):
        LayerFeatureTransformer(cnn, layers="all", cache=MemoryCache()).fit(X)


def test_foreign_entry_of_another_width_is_recomputed_and_never_decides_widths(
    cnn, data, tmp_path
):
    X, _ = data
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    cache = DiskCache(tmp_path, memory_bytes=0)
    LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    # overwrite every entry's "5" rows with rows of another width, in our format
    from sklearn_layers._extraction._npz import read_entry, write_entry

    for f in _entry_files(tmp_path):
        entry = read_entry(f)
        write_entry(f, {k: np.zeros(3, np.float32) for k in entry})
    lft = LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, memory_bytes=0))
    got = lft.fit_transform(X)
    assert lft.n_features_out_ == 16
    same_features(cnn, X, ["5"], got, expected)
    # and the entries were rewritten: served from the directory now
    again = LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, 0))
    same_features(cnn, X, ["5"], again.fit_transform(X), expected)


def test_memory_cache_bound_holds_as_measured(cnn):
    import gc
    import tracemalloc

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 1, 12, 12)).astype(np.float32)
    lft = LayerFeatureTransformer(cnn, layers="5", cache=None).fit(X[:2])
    gc.collect()
    tracemalloc.start()
    try:
        cache = MemoryCache(max_bytes=2_000_000)
        lft.set_params(cache=cache).fit(X).transform(X)
        del lft
        gc.collect()
        base = tracemalloc.take_snapshot()
        cache.clear()
        gc.collect()
        freed = tracemalloc.take_snapshot().compare_to(base, "filename")
        held = -sum(stat.size_diff for stat in freed)
    finally:
        tracemalloc.stop()
    assert cache.max_bytes * 0.5 < held <= cache.max_bytes, held


def test_disk_caches_are_released_when_unused(tmp_path, cnn, data):
    import gc
    import weakref

    from sklearn_layers._extraction._cache import make_cache

    X, _ = data
    LayerFeatureTransformer(cnn, layers="5", cache=tmp_path / "a").fit_transform(X[:4])
    first = weakref.ref(make_cache(tmp_path / "a"))
    for i in range(6):  # other directories in use push it out of the recent few
        make_cache(tmp_path / f"other{i}")
    gc.collect()
    assert first() is None
    # a directory deleted under a held instance gets a fresh one
    held = make_cache(tmp_path / "b")
    held.store("fp", {"l": np.ones((1, 2))}, [b"r" * 16])
    import shutil

    shutil.rmtree(tmp_path / "b")
    assert make_cache(tmp_path / "b") is not held


def test_empty_cache_path_is_an_error(cnn, data):
    X, _ = data
    with pytest.raises(ValueError, match="cache=''"):
        LayerFeatureTransformer(cnn, cache="").fit(X)


def test_progress_bar_only_for_rows_through_the_network(cnn, data, monkeypatch):
    import tqdm

    X, _ = data
    totals = []

    class Recorder(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, disable=True, **kwargs)
            totals.append(self)

    monkeypatch.setattr(tqdm, "tqdm", Recorder)
    cache = MemoryCache()
    lft = LayerFeatureTransformer(cnn, layers="5", cache=cache, verbose=1).fit(X)
    lft.transform(X[:40])
    assert len(totals) == 1 and totals[0].total == 39  # row 0 came with fit
    lft.transform(X)
    assert len(totals) == 2 and totals[1].total == 20
    lft.transform(X)
    assert len(totals) == 2  # all cached: no bar


def test_eviction_of_rows_still_needed_warns_once(cnn, data):
    X, y = data
    pipe = Pipeline([
        ("features", LayerFeatureTransformer(cnn, cache=MemoryCache(max_bytes=60_000))),
        ("head", NearestCentroid()),
    ])
    grid = GridSearchCV(pipe, {"features__layers": ["2", "5", "9"]}, cv=3)
    with pytest.warns(RuntimeWarning, match="max_bytes of at least") as record:
        grid.fit(X, y)
    assert sum("evicted rows" in str(w.message) for w in record) == 1
