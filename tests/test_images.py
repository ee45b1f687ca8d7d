"""Images as practitioners pass them: PIL images, files, arrays of any size, via preprocess."""

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.utils.toy import make_staged_cnn

from _float32 import same_features_of_any
from _helpers import RowCounter

SIZE = 16


def to_batch(images):
    """Resize each image to SIZE x SIZE, scale to [0, 1], stack as (N, 3, H, W)."""
    arrays = [
        np.asarray(Image.fromarray(np.asarray(im)).convert("RGB").resize((SIZE, SIZE)),
                   dtype=np.float32) / 255.0
        for im in images
    ]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_batch_doubled(images):
    return 2 * to_batch(images)


def make_images(n, seed=0):
    """Images of different sizes whose class is their dominant colour channel."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for i in range(n):
        h, w = rng.integers(12, 40, size=2)
        pixels = rng.integers(0, 120, size=(h, w, 3), dtype=np.uint8)
        label = i % 3
        pixels[..., label] += 120
        images.append(Image.fromarray(pixels))
        labels.append(label)
    return images, np.asarray(labels)


@pytest.fixture(scope="module")
def net():
    return make_staged_cnn(n_classes=3, width=4)


def test_pil_images_through_preprocess_in_a_grid_search(net):
    images, y = make_images(45)
    counter = RowCounter(net.block1[0])
    pipe = Pipeline([
        ("features", LayerFeatureTransformer(net, preprocess=to_batch, cache=MemoryCache())),
        ("head", LogisticRegression(max_iter=500)),
    ])
    grid = GridSearchCV(pipe, {"features__layers": ["block1", "block2", "block3"]}, cv=3)
    grid.fit(images, y)
    assert counter.take() == len(images)  # one forward per image, whatever the grid
    assert grid.best_score_ > 0.9
    expected = LayerFeatureTransformer(net, layers="block2", cache=None).fit_transform(
        to_batch(images)
    )
    got = LayerFeatureTransformer(net, layers="block2", preprocess=to_batch,
                                  cache=grid.estimator.get_params()["features__cache"])
    counter.take()
    # served rows ran in the grid's batches
    same_features_of_any(net, to_batch(images), ["block2"], got.fit_transform(images),
                         expected)
    assert counter.take() == 0
    counter.remove()


def test_preprocess_is_part_of_the_cache_key(net):
    images, _ = make_images(6)
    cache = MemoryCache()
    plain = LayerFeatureTransformer(net, layers="block1", preprocess=to_batch,
                                    cache=cache).fit_transform(images)
    doubled = LayerFeatureTransformer(net, layers="block1", preprocess=to_batch_doubled,
                                      cache=cache).fit_transform(images)
    assert not np.allclose(plain, doubled)
    uncached = LayerFeatureTransformer(net, layers="block1", preprocess=to_batch_doubled,
                                       cache=None).fit_transform(images)
    same_features_of_any(net, to_batch_doubled(images), ["block1"], doubled, uncached)


def test_a_lambda_preprocess_is_never_cached(net):
    images, _ = make_images(4)
    cache = MemoryCache()
    LayerFeatureTransformer(net, layers="block1", preprocess=lambda rows: to_batch(rows),
                            cache=cache).fit_transform(images)
    assert len(cache) == 0


def test_file_paths_are_keyed_by_content(net, tmp_path):
    images, _ = make_images(4)
    paths = []
    for i, im in enumerate(images):
        paths.append(tmp_path / f"{i}.png")
        im.save(paths[-1])

    def load(rows):
        return to_batch([Image.open(p) for p in rows])

    cache = MemoryCache()
    lft = LayerFeatureTransformer(net, layers="block1", preprocess=load_files, cache=cache)
    first = lft.fit_transform(paths)
    images[0].transpose(Image.FLIP_LEFT_RIGHT).save(paths[0])  # same path, new pixels
    second = lft.transform(paths)
    assert not np.allclose(first[0], second[0])
    assert_array_equal(first[1:], second[1:])  # unchanged files: served as stored
    fresh = LayerFeatureTransformer(net, layers="block1", preprocess=load,
                                    cache=None).fit_transform(paths)
    same_features_of_any(net, load(paths), ["block1"], second, fresh)


def load_files(rows):
    return to_batch([Image.open(p) for p in rows])


def count_characters(rows):
    """Strings that are not file paths: a character-count featuriser."""
    return torch.tensor([[len(r), r.count(" "), r.count("e")] for r in rows],
                        dtype=torch.float32)


def name_and_size(rows):
    """Features of a file's name and size: the string, not only the content, counts."""
    return torch.tensor([[len(str(r)), Path(r).stat().st_size] for r in rows],
                        dtype=torch.float32)


def test_strings_that_are_not_files_are_cached_by_the_string(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a dir").mkdir()  # a string naming a directory is no file either
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    X = ["hello world", "a b c", "a dir", "x" * 5000, "nul\0inside", ""]
    counter = RowCounter(net[0])
    cache = MemoryCache()
    got = LayerFeatureTransformer(net, layers="0", preprocess=count_characters,
                                  cache=cache).fit_transform(X)
    assert counter.take() == len(X)
    served = LayerFeatureTransformer(net, layers="0", preprocess=count_characters,
                                     cache=cache).fit_transform(X[::-1])
    assert counter.take() == 0
    assert_array_equal(served, got[::-1])
    expected = LayerFeatureTransformer(net, layers="0", preprocess=count_characters,
                                       cache=None).fit_transform(X)
    counter.remove()
    same_features_of_any(net, count_characters(X), ["0"], got, expected)


def test_file_paths_are_keyed_by_name_and_content(tmp_path):
    # two files with the same bytes under different names are different rows
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    (tmp_path / "a.txt").write_bytes(b"same bytes")
    (tmp_path / "a much longer name.txt").write_bytes(b"same bytes")
    paths = [str(tmp_path / "a.txt"), str(tmp_path / "a much longer name.txt")]
    cache = MemoryCache()

    def served_as_computed():
        served, computed = (
            LayerFeatureTransformer(net, layers="0", preprocess=name_and_size,
                                    cache=c).fit_transform(paths)
            for c in (cache, None)
        )
        same_features_of_any(net, name_and_size(paths), ["0"], served, computed)
        return served

    got = served_as_computed()
    assert not np.allclose(got[0], got[1])
    (tmp_path / "a.txt").write_bytes(b"other, longer bytes")  # edited: a miss
    assert not np.allclose(served_as_computed()[0], got[0])


def test_arrays_of_different_sizes(net):
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 255, size=(s, s, 3), dtype=np.uint8) for s in (10, 20, 30)]
    got = LayerFeatureTransformer(net, layers="block1", preprocess=to_batch,
                                  cache=MemoryCache()).fit_transform(arrays)
    assert got.shape[0] == 3


@pytest.mark.parametrize(
    "X, match",
    [
        (make_images(3)[0], "PIL images.*preprocess="),
        ([np.zeros((4, 4, 3)), np.zeros((5, 5, 3))], "different shapes.*preprocess="),
        (["a.png", "b.png"], "preprocess="),
    ],
)
def test_without_preprocess_such_input_gets_a_clear_error(net, X, match):
    with pytest.raises(ValueError, match=match):
        LayerFeatureTransformer(net, layers="block1").fit(X)


def test_preprocess_returning_the_wrong_number_of_rows(net):
    images, _ = make_images(3)
    with pytest.raises(ValueError, match="one row per item"):
        LayerFeatureTransformer(net, layers="block1",
                                preprocess=lambda rows: to_batch(rows)[:1]).fit_transform(images)


class _LookupTable(dict):
    """A callable dict: item -> its row (its state is its content, its code __call__)."""

    def __call__(self, keys):
        return np.stack([self[k] for k in keys]).astype(np.float32)


class _Steps(list):
    """A home-made Compose: a list of callables applied in turn."""

    def __call__(self, rows):
        for step in self:
            rows = step(rows)
        return rows


class _Scale:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, rows):
        return np.stack([np.full(4, self.factor * len(r), np.float32) for r in rows])


class _Norm(__import__("enum").Enum):
    ONE = 1

    def __call__(self, rows):
        return np.stack([np.full(4, float(len(r)), np.float32) for r in rows])


@pytest.mark.parametrize("preprocess", [
    _LookupTable(x=np.zeros(4), y=np.ones(4)), _Steps([_Scale(1.0)]), _Norm.ONE,
], ids=["dict", "list", "enum"])
def test_a_callable_container_or_enum_preprocess_has_no_name(preprocess):
    # its name would show its items (or its value), not its code nor its items' state
    from sklearn_layers._extraction._identity import preprocess_name

    assert preprocess_name(preprocess) is None


def test_two_lookup_tables_are_never_served_each_others_rows():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    a = _LookupTable(x=np.zeros(4), y=np.ones(4))
    b = _LookupTable(x=np.full(4, 5.0), y=np.full(4, -3.0))
    cache, items = MemoryCache(), ["x", "y"]
    with pytest.warns(UserWarning, match="no stable name"):
        LayerFeatureTransformer(net, layers="2", preprocess=a, cache=cache).fit_transform(items)
    got = LayerFeatureTransformer(net, layers="2", preprocess=b, cache=cache).fit_transform(items)
    expected = LayerFeatureTransformer(net, layers="2", preprocess=b,
                                       cache=None).fit_transform(items)
    assert_array_equal(got, expected)
