"""Input adapters: every way users pass rows, keyed and validated."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers.utils.toy import make_mlp

from _float32 import gamma, same_features, same_features_of_any


class Keyed(nn.Module):
    """``model(x=..., offset=...)`` or ``model(x=..., scale=...)``."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x, offset=None, scale=None):
        if offset is not None:
            x = x + offset
        if scale is not None:
            x = x * scale
        return self.linear(x)


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)


def test_dict_key_names_are_part_of_the_row_key(X):
    net = Keyed()
    Z = np.full_like(X, 2.0)
    cache = MemoryCache()
    offset = LayerFeatureTransformer(net, layers="output", cache=cache).fit_transform(
        {"x": X, "offset": Z}
    )
    scale = LayerFeatureTransformer(net, layers="output", cache=cache).fit_transform(
        {"x": X, "scale": Z}
    )
    expected = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(
        {"x": X, "scale": Z}
    )
    assert not np.allclose(offset, scale)
    same_features_of_any(net, {"x": X, "scale": Z}, ["output"], scale, expected)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_dict_input_with_nan_is_rejected_like_an_array(X, bad):
    X = X.copy()
    X[3, 1] = bad
    with pytest.raises(ValueError, match="'x' contains NaN or infinity"):
        LayerFeatureTransformer(Keyed(), layers="output").fit({"x": X})
    with pytest.raises(ValueError, match="NaN|infinity"):
        LayerFeatureTransformer(Keyed(), layers="output").fit(X)


def test_a_mapping_that_is_not_a_dict_is_a_dict_input(X):
    from collections import UserDict

    net = Keyed()
    batch = UserDict({"x": torch.as_tensor(X)})  # as a tokenizer's BatchEncoding is
    got = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(batch)
    expected = LayerFeatureTransformer(net, layers="output", cache=None).fit_transform(
        {"x": X}
    )
    assert_array_equal(got, expected)


def test_bfloat16_tensor_gives_the_same_features_with_and_without_a_cache(X):
    net = make_mlp()
    t = torch.as_tensor(X).to(torch.bfloat16)
    cache = MemoryCache()
    cached = LayerFeatureTransformer(net, layers="1", cache=cache).fit_transform(t)
    plain = LayerFeatureTransformer(net, layers="1", cache=None).fit_transform(t)
    # bfloat16 -> float32 is exact, so only GEMM blocking differs
    values = t.float().numpy()
    same_features(net, values, ["1"], cached, plain)
    assert len(cache) > 0
    # a bfloat16 row and its float32 value are different rows
    f32 = LayerFeatureTransformer(net, layers="1", cache=cache).fit_transform(t.float())
    same_features(net, values, ["1"], f32, plain)


def test_single_string_is_not_a_list_of_characters():
    with pytest.raises(ValueError, match="single string"):
        LayerFeatureTransformer(make_mlp(), tokenizer=len).fit_transform("hello world")


def test_sparse_tensor_is_a_clear_type_error(X):
    with pytest.raises(TypeError, match="sparse tensor"):
        LayerFeatureTransformer(make_mlp()).fit(torch.as_tensor(X).to_sparse())


def test_data_loader_is_read_in_order(X):
    net = make_mlp()
    y = torch.arange(len(X))
    loader = DataLoader(TensorDataset(torch.as_tensor(X), y), batch_size=3)
    expected = LayerFeatureTransformer(net, layers="3", cache=None).fit_transform(X)
    for cache in (None, MemoryCache()):
        got = LayerFeatureTransformer(net, layers="3", cache=cache).fit_transform(loader)
        same_features(net, X, ["3"], got, expected)  # batches of 3, not one


def test_shuffled_data_loader_is_refused(X):
    loader = DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=3, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        LayerFeatureTransformer(make_mlp()).fit(loader)


class InPlaceKeyword(nn.Module):
    """``model(x=...)`` whose first operation rewrites its input in place."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x.relu_())


def _as(kind, X):
    if kind == "numpy":
        return X.copy()
    if kind == "tensor":
        return torch.tensor(X)
    if kind == "dict of arrays":
        return {"x": X.copy()}
    return {"x": torch.tensor(X)}


@pytest.mark.parametrize("cache", [None, "memory"])
@pytest.mark.parametrize("kind", ["numpy", "tensor", "dict of arrays", "dict of tensors"])
def test_a_model_writing_its_input_in_place_leaves_x_unchanged(X, kind, cache):
    torch.manual_seed(0)
    if kind.startswith("dict"):
        net = InPlaceKeyword()
    else:
        net = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(4, 3))
    data = _as(kind, X)
    before = _as(kind, X)
    # one batch holds every row: nothing is indexed, so nothing is copied on the way
    lft = LayerFeatureTransformer(net, layers="output",
                                  cache=None if cache is None else MemoryCache())
    lft.fit(_as(kind, X + 1))  # other rows: every row of data misses the cache
    lft.transform(data)
    lft.fit_transform(data)
    if kind.startswith("dict"):
        data, before = data["x"], before["x"]
    assert_array_equal(np.asarray(data), np.asarray(before))


def test_data_loader_that_drops_its_last_batch_is_refused(X):
    loader = DataLoader(TensorDataset(torch.as_tensor(X)), batch_size=3, drop_last=True)
    with pytest.raises(ValueError, match="drop_last=False"):
        LayerFeatureTransformer(make_mlp(), cache=None).fit(loader)


# -- rows are positional whatever the container -------------------------------------


def stack_items(rows):
    """A module-level preprocess: items are (4,) arrays or paths of .npy files."""
    return torch.as_tensor(np.stack([np.load(r) if isinstance(r, str) else r for r in rows]))


def _positional_containers(items):
    import pandas as pd
    from sklearn.model_selection import train_test_split

    n = len(items)
    series = pd.Series(items, dtype=object)
    order = np.random.default_rng(1).permutation(n)
    shuffled = series.sample(frac=1, random_state=2)  # index no longer 0..n-1
    _, split = train_test_split(series, test_size=0.5, random_state=0)
    return {
        "shuffled Series": (shuffled, [items[i] for i in shuffled.index]),
        "string index": (pd.Series(items, index=[f"r{i}" for i in order], dtype=object),
                         items),
        "after train_test_split": (split, [items[i] for i in split.index]),
        "one-column DataFrame": (pd.DataFrame({"item": shuffled.to_numpy()},
                                              index=shuffled.index),
                                 [items[i] for i in shuffled.index]),
    }


@pytest.mark.parametrize("kind", ["arrays", "paths"])
def test_pandas_items_are_read_by_position(X, kind, tmp_path):
    if kind == "paths":
        items = []
        for i, row in enumerate(X):
            np.save(tmp_path / f"{i}.npy", row)
            items.append(str(tmp_path / f"{i}.npy"))
    else:
        items = list(X)
    net = make_mlp()
    for name, (container, as_list) in _positional_containers(items).items():
        for cache in (None, MemoryCache()):
            lft = LayerFeatureTransformer(net, layers="3", preprocess=stack_items,
                                          cache=cache)
            got = lft.fit_transform(container)
            expected = LayerFeatureTransformer(
                net, layers="3", preprocess=stack_items, cache=None
            ).fit_transform(as_list)
            rows = stack_items(as_list).numpy()
            # a row is the same row; batches of other sizes may round differently
            same_features(net, rows, ["3"], got, expected)
            same_features(net, rows, ["3"], lft.transform(container), expected)


def test_a_pipeline_on_a_shuffled_series_predicts_as_on_the_list(X):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline

    rng = np.random.default_rng(5)
    X = rng.normal(size=(18, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    series = pd.Series(list(X), dtype=object).sample(frac=1, random_state=3)
    y_series = y[series.index]
    pipe = make_pipeline(
        LayerFeatureTransformer(make_mlp(), layers="1", preprocess=stack_items, cache=None),
        LogisticRegression(),
    )
    got = cross_val_predict(pipe, series, y_series, cv=3)
    expected = cross_val_predict(pipe, list(series), y_series, cv=3)
    assert_array_equal(got, expected)


def test_a_dataframe_of_several_columns_is_not_a_column_of_items(X):
    import pandas as pd

    frame = pd.DataFrame({"a": list(X), "b": list(X)})
    with pytest.raises(ValueError, match="one column of items"):
        LayerFeatureTransformer(make_mlp(), preprocess=stack_items).fit(frame)


class WordTokenizer:
    """A Hugging Face-style tokenizer over a fixed vocabulary, padding either side."""

    def __init__(self, padding_side="right"):
        self.padding_side = padding_side

    def __call__(self, texts, padding=True, truncation=True, max_length=None,
                 return_tensors="pt"):
        ids = [[1 + (sum(map(ord, w)) % 50) for w in t.split()] for t in texts]
        width = max(map(len, ids))
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        mask = torch.zeros(len(ids), width, dtype=torch.long)
        for i, row in enumerate(ids):
            part = slice(width - len(row), width) if self.padding_side == "left" else \
                slice(0, len(row))
            input_ids[i, part] = torch.tensor(row)
            mask[i, part] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


class TokenWise(nn.Module):
    """Embeddings and a per-token layer: a real token's activation ignores padding."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(51, 6)
        self.mix = nn.Linear(6, 6)

    def forward(self, input_ids, attention_mask=None):
        return self.mix(self.embed(input_ids))


TEXTS = ["a short one", "a considerably longer sentence with many more words", "hi",
         "four words are here"]


@pytest.mark.parametrize("pooling", ["cls", "last", "mean", "max"])
def test_left_padded_rows_pool_as_when_alone(pooling):
    net = TokenWise()
    for side in ("left", "right"):
        def features(batch_size):
            return LayerFeatureTransformer(
                net, layers="mix", pooling=pooling, tokenizer=WordTokenizer(side),
                batch_size=batch_size, cache=None,
            ).fit_transform(TEXTS)

        # per token, a 6-term dot product and a bias, then a mean of at most 7
        # tokens: float32 sums in another order differ by 2 gamma(6 + 1 + 7) |.|
        with torch.no_grad():
            magnitude = float((net.mix.weight.abs() @ net.embed.weight.abs().T).max()
                              + net.mix.bias.abs().max())
        np.testing.assert_allclose(features(4), features(1), rtol=0,
                                   atol=2 * gamma(14) * magnitude, err_msg=side)


def test_a_series_or_column_of_strings_is_read_by_position():
    import pandas as pd

    net = TokenWise()
    lft = LayerFeatureTransformer(net, layers="mix", tokenizer=WordTokenizer(), cache=None)
    series = pd.Series(TEXTS, index=[3, 0, 2, 1])
    expected = lft.fit_transform(TEXTS)
    assert_array_equal(lft.fit_transform(series), expected)
    assert_array_equal(lft.fit_transform(series.to_frame("text")), expected)
    with pytest.raises(ValueError, match="preprocess"):  # not a tokenizer's job
        LayerFeatureTransformer(net, layers="mix").fit(series)


def test_a_layer_selector_reads_a_shuffled_series_by_position():
    import pandas as pd

    from sklearn_layers import IntermediateLayerClassifier

    rng = np.random.default_rng(6)
    X = rng.normal(size=(18, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    series = pd.Series(list(X), dtype=object).sample(frac=1, random_state=4)
    y = y[series.index]
    net = make_mlp()
    as_series = IntermediateLayerClassifier(net, layers=["1", "3"], cv=3).fit(series, y)
    as_list = IntermediateLayerClassifier(net, layers=["1", "3"], cv=3).fit(
        np.stack(list(series)), y)
    assert as_series.best_layer_ == as_list.best_layer_
    assert_array_equal(as_series.predict(series), as_list.predict(np.stack(list(series))))


# -- collated rows: a Dataset's items or a DataLoader's batches -----------------------


class Items(torch.utils.data.Dataset):
    """A map-style Dataset of the items ``make(i)``."""

    def __init__(self, n, make):
        self.n, self.make = n, make

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.make(i)


class TokenMean(nn.Module):
    """``model(input_ids=...)``: the mean embedding of each row's tokens."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 3)

    def forward(self, input_ids):
        return self.emb(input_ids).mean(1)


IDS = [[1, 5, 7, 2], [1, 9, 2, 0], [1, 3, 3, 2], [1, 8, 2, 0], [1, 4, 6, 2],
       [1, 7, 7, 2], [1, 2, 5, 2], [1, 6, 2, 0]]


@pytest.mark.parametrize("cache", [None, "memory"])
@pytest.mark.parametrize("as_loader", [False, True])
def test_items_holding_lists_are_refused_not_read_transposed(cache, as_loader):
    # default_collate turns lists of 4 ids into 4 tensors of the batch's ids; with 4
    # rows a batch, they stacked into a (tokens, rows) tensor read as rows
    torch.manual_seed(0)
    net = TokenMean()
    data = Items(len(IDS), lambda i: {"input_ids": IDS[i]})
    if as_loader:
        data = DataLoader(data, batch_size=4)
    lft = LayerFeatureTransformer(net, layers="output", cache=cache, batch_size=4)
    with pytest.raises(ValueError, match="collated 'input_ids' into a list of 4 values"):
        lft.fit_transform(data)
    tensors = Items(len(IDS), lambda i: {"input_ids": torch.tensor(IDS[i])})
    got = lft.fit_transform(tensors)
    with torch.no_grad():  # the same batches of 4, so the same float32 operations
        expected = torch.cat([net(torch.tensor(IDS[:4])), net(torch.tensor(IDS[4:]))])
    assert_array_equal(got, expected.numpy())


@pytest.mark.parametrize("cache", [None, "memory"])
def test_items_holding_a_pair_of_inputs_are_refused(X, cache):
    pairs = Items(len(X), lambda i: ((torch.tensor(X[i]), torch.tensor(X[i])), 0))
    with pytest.raises(ValueError, match="collated the input into a list of 2 values"):
        LayerFeatureTransformer(make_mlp(), cache=cache, batch_size=4).fit(pairs)


def test_a_collate_fn_whose_rows_are_not_the_samples_is_refused(X):
    # batches of 4 rows of 2 values, collated (2, 4): 2 rows a batch, 5 batches of
    # the 10 samples, so the total alone would not tell
    loader = DataLoader(TensorDataset(torch.as_tensor(X[:, :2])), batch_size=4,
                        collate_fn=lambda b: torch.stack([x for (x,) in b], dim=1))
    net = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"batch of 4 samples \(batch_size=4\) collated "
                                         "into inputs of 2 rows"):
        LayerFeatureTransformer(net, cache=None).fit(loader)
    uneven = DataLoader(
        TensorDataset(torch.as_tensor(X)), batch_size=4,
        collate_fn=lambda b: {"x": torch.stack([x for (x,) in b]), "offset": b[0][0][:2]})
    with pytest.raises(ValueError, match="different numbers of rows"):
        LayerFeatureTransformer(Keyed(), cache=None).fit(uneven)


@pytest.mark.parametrize("cache", [None, "memory"])
@pytest.mark.parametrize("item", ["tensor", "array", "(x, y)", "dict"])
def test_dataset_items_of_tensors_and_arrays_give_the_features_of_the_array(X, item, cache):
    net = make_mlp()
    make = {
        "tensor": lambda i: torch.tensor(X[i]),
        "array": lambda i: X[i],
        "(x, y)": lambda i: (torch.tensor(X[i]), i % 2),
        "dict": lambda i: {"x": X[i]},
    }[item]
    model = Keyed() if item == "dict" else net
    expected = LayerFeatureTransformer(model, layers="output", cache=None).fit_transform(
        {"x": X} if item == "dict" else X)
    got = LayerFeatureTransformer(model, layers="output", cache=cache,
                                  batch_size=3).fit_transform(Items(len(X), make))
    same_features_of_any(model, {"x": X} if item == "dict" else X, ["output"], got, expected)


def test_a_positional_input_never_shares_rows_with_a_keyword_named_arg0(X):
    class Arg0(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x=None, arg0=None):
            return self.linear(x) if x is not None else self.linear(-arg0)

    torch.manual_seed(0)
    net, cache = Arg0(), MemoryCache()
    plain = Items(len(X), lambda i: torch.tensor(X[i]))
    keyed = Items(len(X), lambda i: {"arg0": torch.tensor(X[i])})
    LayerFeatureTransformer(net, layers="linear", cache=cache).fit_transform(plain)
    served = LayerFeatureTransformer(net, layers="linear", cache=cache).fit_transform(keyed)
    fresh = LayerFeatureTransformer(net, layers="linear", cache=None).fit_transform(keyed)
    assert_array_equal(served, fresh)
