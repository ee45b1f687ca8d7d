import multiprocessing
import sqlite3

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
    counter = RowCounter(cnn[0])  # an independent count, to check the cache's own
    cache = MemoryCache()
    pipe = Pipeline(
        [
            ("features", LayerFeatureTransformer(cnn, cache=cache, batch_size=16)),
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
    assert cache.n_rows_computed == counter.rows

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
    lft = LayerFeatureTransformer(cnn, layers="9", cache=cache).fit(X)
    first = lft.transform(X)
    computed = cache.n_rows_computed
    second = lft.transform(X)
    LayerFeatureTransformer(cnn, layers=["2", "5"], cache=cache).fit_transform(X)
    assert cache.n_rows_computed == computed  # not even a row to trace the model
    assert_array_equal(first, second)


def test_a_counting_hook_registered_between_calls_is_another_model(cnn, data):
    # why the docs count with n_rows_computed: a hook can change outputs, so
    # it is part of the key, and the same hook code is the same key everywhere
    X, _ = data
    cache = MemoryCache()
    LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    counter = RowCounter(cnn[0])
    before = cache.n_rows_computed
    LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    again = cache.n_rows_computed
    LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    counter.remove()
    assert again - before == len(X) == counter.rows  # every row again
    assert cache.n_rows_computed == again  # the same hook: served


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


def _database(path):
    import sqlite3

    return sqlite3.connect(path / "activations.sqlite", isolation_level=None)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # truncated
        lambda b: b[:100] + bytes(len(b) - 100),  # zeroed tail
        lambda b: b"\x00" * len(b),  # garbage
        lambda b: b"SQLite format 3\x00" + bytes(200),  # a header and nothing else
    ],
)
def test_corrupt_database_is_set_aside_never_served(cnn, data, tmp_path, damage):
    X, _ = data
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    first = DiskCache(tmp_path, 0)
    LayerFeatureTransformer(cnn, layers="5", cache=first).fit_transform(X)
    del first
    file = tmp_path / "activations.sqlite"
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"activations.sqlite{suffix}").unlink(missing_ok=True)
    file.write_bytes(damage(file.read_bytes()))
    cache = DiskCache(tmp_path, 0)
    with pytest.warns(RuntimeWarning, match="never served"):
        got = LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    same_features(cnn, X, ["5"], got, expected)
    assert cache.n_rows_computed == len(X) + 1  # every row again (and fit's own)
    assert list(tmp_path.glob("activations.sqlite.corrupt-*"))
    # a new database took its place: a third pass is all hits
    third = DiskCache(tmp_path, 0)
    LayerFeatureTransformer(cnn, layers="5", cache=third).fit_transform(X)
    assert third.n_rows_computed == 1  # fit computes its first row


def test_foreign_database_is_set_aside(cnn, data, tmp_path):
    X, _ = data
    db = _database(tmp_path)
    db.execute("CREATE TABLE rows (model, layer, row, dtype, width, value)")
    db.close()
    cache = DiskCache(tmp_path, 0)
    with pytest.warns(RuntimeWarning, match="another program"):
        LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    assert list(tmp_path.glob("activations.sqlite.corrupt-*"))


@pytest.mark.parametrize("error", [sqlite3.ProgrammingError, sqlite3.IntegrityError,
                                   sqlite3.OperationalError])
def test_an_error_that_says_nothing_about_the_file_never_sets_it_aside(cnn, data, tmp_path,
                                                                      error):
    # a misuse or a constraint raised without an SQLite code (as on Python 3.10) is
    # a miss and a warning; the file and its rows stay
    X, _ = data
    LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, 0)).fit_transform(X)
    cache = DiskCache(tmp_path, 0)
    cache._connection()
    with pytest.warns(RuntimeWarning, match="Could not use the activation cache"):
        cache._failed(error("raised without an SQLite error code"))
    assert not list(tmp_path.glob("activations.sqlite.corrupt-*"))
    again = DiskCache(tmp_path, 0)
    LayerFeatureTransformer(cnn, layers="5", cache=again).fit_transform(X)
    assert again.n_rows_computed == 1  # every row still served (fit computes its first)


def test_a_path_resolves_to_a_new_disk_cache_that_holds_nothing_after_use(cnn, data, tmp_path):
    import gc
    import weakref

    from sklearn_layers._extraction._cache import make_cache

    X, _ = data
    assert make_cache(tmp_path) is not make_cache(tmp_path)  # no registry of paths
    cache = make_cache(tmp_path)
    LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X[:4])
    alive = weakref.ref(cache)
    del cache
    gc.collect()
    assert alive() is None  # nothing in the package holds it (nor its front)
    # the next object reads the same database
    again = make_cache(tmp_path)
    LayerFeatureTransformer(cnn, layers="5", cache=again).fit_transform(X[:4])
    assert again.n_rows_computed == 1


def test_disk_cache_never_serves_rows_it_cannot_check(tmp_path):
    cache = DiskCache(tmp_path, memory_bytes=0)
    cache.store("fp", {"l": np.ones((2, 3))}, [b"a" * 16, b"b" * 16])
    db = _database(tmp_path)
    db.execute("UPDATE rows SET dtype = '|O' WHERE row = ?", (b"a" * 16,))  # a pickle's dtype
    db.execute("UPDATE rows SET value = x'00' WHERE row = ?", (b"b" * 16,))  # short
    db.close()
    assert DiskCache(tmp_path, 0).lookup("fp", ["l"], [b"a" * 16, b"b" * 16])["l"] == [None, None]


def test_file_rows_of_mixed_widths_are_recomputed_through_a_memory_front(cnn, data, tmp_path):
    # some rows of one layer rewritten in another width, in our format: the in-memory
    # front (default memory_bytes) takes each width apart, and the transformer recomputes
    X, _ = data
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path, 0)).fit_transform(X)
    db = _database(tmp_path)
    db.execute("UPDATE rows SET width = 3, value = zeroblob(12) "
               "WHERE row IN (SELECT row FROM rows LIMIT 30)")
    db.close()
    lft = LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path))
    got = lft.fit_transform(X)
    assert lft.n_features_out_ == 16
    same_features(cnn, X, ["5"], got, expected)


def test_full_disk_still_returns_features_and_warns(cnn, data, tmp_path):
    X, _ = data
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    cache = DiskCache(tmp_path)
    cache.store("fp", {"l": np.ones((1, 2))}, [b"r" * 16])
    cache._connection().execute("PRAGMA max_page_count = 1")  # SQLite's own "disk full"
    with pytest.warns(RuntimeWarning, match="full"):
        got = LayerFeatureTransformer(cnn, layers="5", cache=cache).fit_transform(X)
    same_features(cnn, X, ["5"], got, expected)


def test_read_only_database_still_returns_features_and_warns(cnn, data, tmp_path, monkeypatch):
    import sqlite3

    X, _ = data
    LayerFeatureTransformer(cnn, layers="2", cache=DiskCache(tmp_path)).fit_transform(X[:5])
    expected = LayerFeatureTransformer(cnn, layers="5", cache=None).fit_transform(X)
    # root ignores permission bits: open the file read-only as a read-only mount would
    monkeypatch.setattr(DiskCache, "_open", lambda self: sqlite3.connect(
        f"file:{self.file}?mode=ro", uri=True, isolation_level=None, check_same_thread=False))
    with pytest.warns(RuntimeWarning, match="readonly"):
        got = LayerFeatureTransformer(cnn, layers="5", cache=DiskCache(tmp_path)).fit_transform(X)
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
    digests = [bytes([i]) * 16 for i in range(8)]
    found = DiskCache(tmp_path).lookup("fp", ["layer", "extra0", "extra1", "extra2"], digests)
    for row in found["layer"]:
        assert_array_equal(row, np.ones(32, dtype=np.float32))
    # each writer's own layer of the same rows is there: no update was lost
    assert all(row is not None for seed in range(3) for row in found[f"extra{seed}"])


def _write_one_layer(path, layer, digests):
    cache = DiskCache(path, memory_bytes=0)
    for lo in range(0, len(digests), 25):
        part = digests[lo:lo + 25]
        cache.store("fp", {layer: np.full((len(part), 4), float(layer[-1]))}, part)


def test_processes_writing_different_layers_of_the_same_rows_lose_nothing(tmp_path):
    digests = [i.to_bytes(16, "little") for i in range(400)]
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_one_layer, args=(tmp_path, f"layer{k}", digests))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    layers = [f"layer{k}" for k in range(4)]
    found = DiskCache(tmp_path, 0).lookup("fp", layers, digests)
    for k, layer in enumerate(layers):
        assert all(row is not None and row[0] == k for row in found[layer])


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
    # overwrite every stored row with a row of another width, in our format
    db = _database(tmp_path)
    db.execute("UPDATE rows SET width = 3, value = zeroblob(12)")
    db.close()
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


def test_eviction_of_rows_still_needed_warns_once():
    import re
    import warnings

    # entries of 4,000 bytes of features in a 64 KiB cache: at most 16 are held,
    # and the tracker (a sixteenth of the bound) remembers the latest evictions
    cache = MemoryCache(max_bytes=64 * 1024)
    digests = [i.to_bytes(16, "little") for i in range(40)]
    for i, digest in enumerate(digests):
        cache.store("fp", {"l": np.full((1, 1000), i, np.float32)}, [digest])
    held = digests[-len(cache):]
    assert 0 < len(held) <= 16
    assert all(row is not None for row in cache.lookup("fp", ["l"], held)["l"])  # the latest
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.lookup("fp", ["l"], [b"x" * 16])  # never stored: no warning
        cache.lookup("fp", ["other"], digests[-1:])  # another layer: never stored either
    latest_evicted = digests[-len(held) - 1]
    with pytest.warns(RuntimeWarning, match="max_bytes of about") as record:
        cache.lookup("fp", ["l"], [latest_evicted])
    needed = int(re.search(r"of about ([\d,]+)", str(record[0].message))[1].replace(",", ""))
    assert needed >= 40 * 4000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.lookup("fp", ["l"], [latest_evicted])  # once per cache


def flatten_pixels(rows):
    return torch.stack([torch.as_tensor(np.asarray(r.convert("RGB")), dtype=torch.float32)
                        .flatten() for r in rows])


def test_palette_images_are_keyed_by_their_colours():
    from PIL import Image

    indices = np.arange(16, dtype=np.uint8).reshape(4, 4)
    images = []
    for scale in (1, 3):
        image = Image.fromarray(indices, mode="P")
        image.putpalette([min(255, scale * v) for v in range(256) for _ in range(3)])
        images.append(image)
    net = torch.nn.Sequential(torch.nn.Linear(48, 5))
    cache = MemoryCache()

    def lft():
        return LayerFeatureTransformer(net, layers="0", preprocess=flatten_pixels, cache=cache)

    dark = lft().fit_transform(images[:1])
    light = lft().fit_transform(images[1:])
    fresh = LayerFeatureTransformer(net, layers="0", preprocess=flatten_pixels,
                                    cache=None).fit_transform(images[1:])
    assert not np.allclose(dark, light)
    assert_array_equal(light, fresh)


def tokens_of_width(rows, width=3, scale=1.0):
    return torch.stack([torch.full((width,), scale * len(r)) for r in rows])


def test_module_level_functions_with_plain_defaults_are_keyed(cnn, data):
    from sklearn_layers._extraction._identity import function_name

    assert function_name(tokens_of_width) is not None
    assert function_name(flatten_pixels) != function_name(tokens_of_width)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    cache = MemoryCache()
    items = ["a", "bb", "ccc"]
    LayerFeatureTransformer(net, layers="0", preprocess=tokens_of_width,
                            cache=cache).fit_transform(items)
    assert len(cache) > 0
    # a changed default is another key
    before = function_name(tokens_of_width)
    tokens_of_width.__defaults__ = (3, 2.0)
    try:
        assert function_name(tokens_of_width) != before
    finally:
        tokens_of_width.__defaults__ = (3, 1.0)


def test_an_unkeyable_callable_warns_once_naming_it(cnn, data):
    import warnings

    X, _ = data
    cache = MemoryCache()
    lft = LayerFeatureTransformer(cnn, layers="5", pooling=lambda a: a.mean(dim=(2, 3)),
                                  cache=cache)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lft.fit_transform(X)
        lft.transform(X)
        for _ in range(2):  # clones in a grid share the cache: still once
            __import__("sklearn").base.clone(lft).fit_transform(X)
    messages = [str(w.message) for w in caught if "no stable name" in str(w.message)]
    assert len(messages) == 1
    assert "<lambda>" in messages[0] and "module-level function" in messages[0]
    assert cache.n_rows_computed == 4 * len(X) + 3  # every call (and fit) ran the network


def test_a_row_given_twice_is_served_twice_from_disk(tmp_path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    rows = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    X = np.concatenate([rows, rows, rows])  # 9 rows, 3 distinct
    cache = DiskCache(tmp_path, memory_bytes=0)  # every hit read from the file
    lft = LayerFeatureTransformer(net, layers="2", cache=cache).fit(X)
    expected = lft.transform(X)
    before = cache.n_rows_computed
    assert_array_equal(lft.transform(X), expected)
    assert cache.n_rows_computed == before  # every copy served


class _OwnCache:
    """A cache of the user's own: a dict behind lookup and store."""

    def __init__(self):
        self.rows = {}

    def lookup(self, model, layer_keys, digests):
        return {k: [self.rows.get((model, k, d)) for d in digests] for k in layer_keys}

    def store(self, model, features, digests):
        for k, matrix in features.items():
            for d, row in zip(digests, np.asarray(matrix, np.float32)):
                self.rows[model, k, d] = row


def test_a_cache_of_the_users_own_is_used_and_never_written_to_by_the_package():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    X = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    cache = _OwnCache()
    lft = LayerFeatureTransformer(net, layers="2", cache=cache).fit(X)
    first = lft.transform(X)
    assert len({digest for _, layer, digest in cache.rows if layer.startswith("2|")}) == len(X)
    assert_array_equal(lft.transform(X), first)
    assert set(vars(cache)) == {"rows"}  # no memo, no counter set on it
