import pickle
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.testing import assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from torch import nn

from sklearn_layers import LayerFeatureTransformer
from sklearn_layers.utils.toy import make_mlp, make_resnet18, make_small_cnn

from _float32 import assert_rows_close, gamma, same_features, transformer_rtol
from _helpers import assert_unchanged, snapshot


def hand_features(model, module_name, X, pool):
    """Reference: one hook, the whole forward, pooling written out by hand."""
    store = {}
    module = model.get_submodule(module_name)
    handle = module.register_forward_hook(lambda m, a, out: store.update(out=out))
    try:
        with torch.no_grad():
            model(torch.as_tensor(X, dtype=torch.float32))
    finally:
        handle.remove()
    return pool(store["out"]).numpy()


@pytest.fixture
def images():
    return np.random.default_rng(0).normal(size=(12, 1, 16, 16)).astype(np.float32)


@pytest.fixture
def cnn():
    return make_small_cnn().eval()


@pytest.mark.parametrize(
    "pooling, reference",
    [
        ("mean", lambda a: a.mean(dim=(2, 3))),
        ("max", lambda a: a.amax(dim=(2, 3))),
        ("flatten", lambda a: a.flatten(1)),
        (2, lambda a: nn.functional.adaptive_avg_pool2d(a, 2).flatten(1)),
    ],
)
@pytest.mark.parametrize("cache", [None, "memory"])
def test_features_match_hand_written_hooks(cnn, images, pooling, reference, cache):
    lft = LayerFeatureTransformer(cnn, layers="5", pooling=pooling, cache=cache)
    got = lft.fit(images).transform(images)
    assert got.dtype == np.float32
    expected = hand_features(cnn, "5", images, reference)
    if cache is None and pooling in ("max", "flatten"):
        assert_array_equal(got, expected)  # the same batch, ops and values
    else:  # another summation order in the mean, or row 0 from fit's probe
        same_features(cnn, images, ["5"], got, expected, pooling=pooling)


def test_several_layers_are_side_by_side_in_request_order(cnn, images):
    lft = LayerFeatureTransformer(cnn, layers=["5", "2"], cache=None).fit(images)
    got = lft.transform(images)
    first = hand_features(cnn, "5", images, lambda a: a.mean(dim=(2, 3)))
    second = hand_features(cnn, "2", images, lambda a: a.mean(dim=(2, 3)))
    same_features(cnn, images, ["5", "2"], got, np.hstack([first, second]))
    assert lft.n_features_per_layer_ == {"5": 16, "2": 8}
    assert lft.feature_slices_ == {"5": slice(0, 16), "2": slice(16, 24)}
    names = lft.get_feature_names_out()
    assert names[0] == "5__0" and names[16] == "2__0" and len(names) == 24


def test_penultimate_is_input_of_last_linear(cnn, images):
    lft = LayerFeatureTransformer(cnn, cache=None).fit(images)
    assert lft.layer_names_ == ["10:input"]
    expected = hand_features(cnn, "9", images, lambda a: a)
    assert_array_equal(lft.transform(images), expected)  # the same batch and ops


def test_output_layer_is_model_output(cnn, images):
    got = LayerFeatureTransformer(cnn, layers="output", cache=None).fit_transform(images)
    with torch.no_grad():
        expected = cnn(torch.as_tensor(images)).numpy()
    assert_array_equal(got, expected)  # the same batch and ops


def test_batch_size_does_not_change_features(cnn, images):
    a = LayerFeatureTransformer(cnn, layers="all", batch_size=5, cache=None)
    b = LayerFeatureTransformer(cnn, layers="all", batch_size=64, cache=None)
    got, expected = a.fit_transform(images), b.fit_transform(images)
    same_features(cnn, images, a.layer_names_, got, expected)


def test_early_exit_does_not_run_later_blocks(cnn, images):
    calls = []
    handle = cnn.get_submodule("6").register_forward_hook(lambda *a: calls.append(1))
    try:
        LayerFeatureTransformer(cnn, layers="2", cache=None).fit(images).transform(images)
        assert calls == []
        LayerFeatureTransformer(cnn, layers="9", cache=None).fit(images).transform(images)
        assert len(calls) > 0
    finally:
        handle.remove()


def test_network_is_never_changed(images):
    net = make_small_cnn()
    net.train()
    net[0].eval()  # a mixed state must come back exactly
    for p in net[3].parameters():
        p.requires_grad_(False)
    user_hook = net[2].register_forward_hook(lambda *a: None)
    before = snapshot(net)
    lft = LayerFeatureTransformer(net, layers="all")
    lft.fit(images).transform(images)
    LayerFeatureTransformer(net, layers=0, cache=None).fit_transform(images)
    assert_unchanged(net, before)
    user_hook.remove()


def test_failing_forward_surfaces_and_leaves_no_hook(images):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            x = self.conv(x).mean(dim=(2, 3))
            raise RuntimeError("boom in forward")

    net = Broken()
    before = snapshot(net)
    with pytest.raises(RuntimeError, match="boom in forward"):
        LayerFeatureTransformer(net, layers="fc", cache=None).fit(images)
    assert_unchanged(net, before)


def test_layer_that_never_runs_is_reported(images):
    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.spare = nn.Linear(2, 2)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    with pytest.raises(ValueError, match="did not run"):
        LayerFeatureTransformer(Unused(), layers="spare", cache=None).fit(images)


def test_clone_shares_the_network_and_grid_search_does_not_copy_it(cnn, images):
    lft = LayerFeatureTransformer(cnn, layers="2")
    assert clone(lft).model is cnn
    y = np.arange(len(images)) % 2
    seen = []

    class Spy(LogisticRegression):
        def fit(self, X, y):
            return super().fit(X, y)

    pipe = Pipeline([("features", lft), ("head", Spy())])
    grid = GridSearchCV(pipe, {"features__layers": ["2", "5"]}, cv=2).fit(images, y)
    seen.append(grid.best_estimator_.named_steps["features"].model_)
    assert seen[0] is cnn


def test_pickle_round_trip_gives_same_features(cnn, images):
    lft = LayerFeatureTransformer(cnn, layers=["2", "penultimate"]).fit(images)
    restored = pickle.loads(pickle.dumps(lft))
    assert_array_equal(restored.transform(images), lft.transform(images))


def test_two_threads_get_their_own_layers():
    net = make_resnet18(width=8)
    X = np.random.default_rng(1).normal(size=(24, 3, 32, 32)).astype(np.float32)
    specs = ["layer1.0", "layer3.1", "stem.2", "fc"]
    expected = {  # the batches the threads use: the same float32 operations
        s: LayerFeatureTransformer(net, layers=s, batch_size=4, cache=None).fit_transform(X)
        for s in specs
    }
    results, errors = {}, []

    def work(spec, repeat):
        try:
            lft = LayerFeatureTransformer(net, layers=spec, batch_size=4, cache=None)
            lft.fit(X)
            for _ in range(repeat):
                results.setdefault(spec, []).append(lft.transform(X))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, 3)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for spec in specs:
        for got in results[spec]:
            assert_array_equal(got, expected[spec])
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_dataframe_in_pandas_out():
    net = make_mlp(3, hidden=(4,), n_outputs=2)
    df = pd.DataFrame({"a": [0.1, 0.2, 0.3], "b": [1.0, 2.0, 3.0], "c": [0.0, 0.5, 1.0]})
    lft = LayerFeatureTransformer(net, layers="all", cache=None).set_output(transform="pandas")
    out = lft.fit_transform(df)
    assert list(lft.feature_names_in_) == ["a", "b", "c"]
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(lft.get_feature_names_out())
    with pytest.raises(ValueError, match="feature names"):
        lft.transform(df.rename(columns={"a": "z"}))


def test_tensor_and_dataset_inputs_match_numpy(cnn, images):
    from torch.utils.data import TensorDataset

    lft = LayerFeatureTransformer(cnn, layers="all", batch_size=5, cache=None)
    expected = lft.fit_transform(images)
    tensor = torch.as_tensor(images)
    assert_array_equal(lft.fit_transform(tensor), expected)  # the same batches
    labels = torch.zeros(len(images))
    dataset = TensorDataset(tensor, labels)
    assert_array_equal(lft.fit_transform(dataset), expected)
    assert lft.input_kind_ == "dataset"


def test_dict_input_mask_reaches_pooling():
    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 3)

        def forward(self, input_ids, attention_mask):
            return self.embed(input_ids)

    net = Tokens()
    ids = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    got = LayerFeatureTransformer(net, layers="embed", pooling="mean", cache=None).fit_transform(
        {"input_ids": ids, "attention_mask": mask}
    )
    with torch.no_grad():
        emb = net.embed(ids).double()
    # two float32 means of the same n exact values: each within gamma(n) * mean|v|
    for row, n in ((0, 2), (1, 4)):
        values = emb[row, :n]
        assert (
            np.abs(got[row] - values.mean(0).numpy())
            <= 2 * gamma(n) * values.abs().mean(0).numpy()
        ).all()
    last = LayerFeatureTransformer(net, layers="embed", pooling="last", cache=None)
    got = last.fit_transform({"input_ids": ids, "attention_mask": mask})
    assert_array_equal(got[0], emb[0, 1].float().numpy())  # a copy, no arithmetic
    cls = LayerFeatureTransformer(net, layers="embed", pooling="cls", cache=None)
    got = cls.fit_transform({"input_ids": ids, "attention_mask": mask})
    assert_array_equal(got, emb[:, 0].float().numpy())


def test_callable_and_dict_pooling(cnn, images):
    def channel_std(a):
        return a.std(dim=(2, 3))

    lft = LayerFeatureTransformer(
        cnn, layers=["2", "5"], pooling={"2": channel_std, "5": "max"}, cache=None
    )
    got = lft.fit_transform(images)
    # the same function on the same activations of the same batch
    assert_array_equal(got[:, :8], hand_features(cnn, "2", images, channel_std))
    assert_array_equal(
        got[:, 8:], hand_features(cnn, "5", images, lambda a: a.amax(dim=(2, 3)))
    )
    with pytest.raises(ValueError, match="not extracted"):
        LayerFeatureTransformer(cnn, layers="2", pooling={"9": "max"}).fit(images)


def test_skorch_like_net_uses_its_module(cnn, images):
    class FittedNet:
        module_ = cnn

    got = LayerFeatureTransformer(FittedNet(), layers="2", cache=None).fit_transform(images)
    expected = LayerFeatureTransformer(cnn, layers="2", cache=None).fit_transform(images)
    assert_array_equal(got, expected)


def test_n_threads_is_restored(cnn, images):
    before = torch.get_num_threads()
    seen = []
    handle = cnn.get_submodule("0").register_forward_hook(
        lambda *a: seen.append(torch.get_num_threads())
    )
    try:
        LayerFeatureTransformer(cnn, layers="2", n_threads=2, cache=None).fit_transform(images)
    finally:
        handle.remove()
    assert set(seen) == {2}
    assert torch.get_num_threads() == before


def test_verbose_shows_progress(cnn, images, capsys):
    LayerFeatureTransformer(cnn, layers="2", verbose=True, cache=None).fit_transform(images)
    assert "extracting" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((3, 1, 16, 16), np.nan, dtype=np.float32), "NaN"),
        (np.full((3, 1, 16, 16), np.inf, dtype=np.float32), "infinity"),
        (np.zeros((0, 1, 16, 16), dtype=np.float32), "0 sample"),
        (np.zeros(5), "2D array"),
        (np.ones((3, 1, 16, 16)) * (1 + 1j), "[Cc]omplex"),
    ],
)
def test_bad_input_is_a_clear_error(cnn, bad, match):
    with pytest.raises(ValueError, match=match):
        LayerFeatureTransformer(cnn, layers="2").fit(bad)


def test_bad_tensor_input_is_a_clear_error(cnn):
    with pytest.raises(ValueError, match="NaN"):
        LayerFeatureTransformer(cnn, layers="2").fit(torch.full((2, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="0 samples"):
        LayerFeatureTransformer(cnn, layers="2").fit(torch.zeros((0, 1, 16, 16)))


def test_wrong_shape_at_transform(cnn, images):
    lft = LayerFeatureTransformer(cnn, layers="2").fit(images)
    with pytest.raises(ValueError, match="shape"):
        lft.transform(images[:, :, :8, :8])
    with pytest.raises(ValueError, match="features"):
        lft.transform(np.zeros((3, 2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="dataset input"):
        from torch.utils.data import TensorDataset

        lft.transform(TensorDataset(torch.as_tensor(images)))


def test_model_on_another_device_is_reported(cnn, images):
    with pytest.raises(ValueError, match="device"):
        LayerFeatureTransformer(cnn, layers="2", device="meta").fit(images)


def test_sparse_input_is_refused(cnn):
    from scipy import sparse

    with pytest.raises(TypeError, match="dense"):
        LayerFeatureTransformer(cnn).fit(sparse.csr_matrix(np.ones((3, 256))))


def test_huge_output_says_what_it_costs(cnn, images, monkeypatch):
    import sklearn_layers._transformer as module

    monkeypatch.setattr(module, "_LARGE_OUTPUT_BYTES", 1000)
    lft = LayerFeatureTransformer(cnn, layers="2", pooling="flatten", cache=None).fit(images)
    with pytest.warns(UserWarning, match=r"12 x 512 float32 matrix.*Pooling"):
        lft.transform(images)


def test_integer_tensor_for_a_float_model_is_a_clear_error(cnn):
    ints = torch.ones((2, 1, 16, 16), dtype=torch.long)
    with pytest.raises(ValueError, match="integer input"):
        LayerFeatureTransformer(cnn, layers="2", cache=None).fit(ints)
    # the same values as a numpy array are cast to the model's dtype
    got = LayerFeatureTransformer(cnn, layers="2", cache=None).fit_transform(ints.numpy())
    assert got.shape == (2, 8)


def test_transformer_layers_keep_their_fused_fast_path():
    from torch.profiler import profile

    from sklearn_layers.utils.toy import make_transformer_encoder

    net = make_transformer_encoder(d_model=32, n_heads=2, n_layers=3)
    ids = torch.randint(0, 1000, (6, 10), generator=torch.Generator().manual_seed(0))
    before = snapshot(net)
    names = ["encoder.layers.0", "encoder.layers.1:input", "encoder.layers.2"]
    lft = LayerFeatureTransformer(net, layers=names, pooling="mean", cache=None).fit(ids)
    with profile() as prof:
        got = lft.transform(ids)
    fused = [e for e in prof.events() if e.name == "aten::_transformer_encoder_layer_fwd"]
    assert len(fused) == 3  # every layer ran its fused kernel
    assert_unchanged(net, before)
    assert all("forward" not in m.__dict__ for m in net.modules())
    # the same numbers as plain hooks on the slow path
    hidden = {}
    hooks = [net.encoder.layers[i].register_forward_hook(
        lambda m, a, out, i=i: hidden.__setitem__(i, out)) for i in (0, 2)]
    pre = net.encoder.layers[1].register_forward_pre_hook(
        lambda m, a: hidden.__setitem__("in", a[0]))
    with torch.no_grad():
        net(ids)
    for h in [*hooks, pre]:
        h.remove()
    expected = np.hstack([hidden[0].mean(1).numpy(), hidden["in"].mean(1).numpy(),
                          hidden[2].mean(1).numpy()])
    # fused kernels vs the composed ops: another order for every sum
    rtol = transformer_rtol(d_model=32, d_ff=128, n_layers=3, seq_len=10, n_heads=2)
    for i in range(3):
        block = slice(32 * i, 32 * (i + 1))
        assert_rows_close(got[:, block], expected[:, block], rtol)
    # a module inside a fused layer only runs on the slow path: a hook takes it there
    inner = LayerFeatureTransformer(net, layers="encoder.layers.1.self_attn:input",
                                    cache=None).fit_transform(ids)
    assert_rows_close(inner, expected[:, 32:64], rtol)
    assert_unchanged(net, before)


def test_threads_share_tapped_transformer_layers():
    from sklearn_layers.utils.toy import make_transformer_encoder

    net = make_transformer_encoder(d_model=32, n_heads=2, n_layers=3)
    ids = torch.randint(0, 1000, (16, 8), generator=torch.Generator().manual_seed(1))
    specs = ["encoder.layers.0", "encoder.layers.2", ["encoder.layers.1", "head"]]
    expected = [  # the batches the threads use: the same float32 operations
        LayerFeatureTransformer(net, layers=s, batch_size=3, cache=None).fit_transform(
            ids
        )
        for s in specs
    ]
    results, errors = {}, []

    def work(i):
        try:
            lft = LayerFeatureTransformer(net, layers=specs[i], batch_size=3, cache=None)
            results[i] = [lft.fit(ids).transform(ids) for _ in range(5)]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(specs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(len(specs)):
        for got in results[i]:
            assert_array_equal(got, expected[i])
    assert all("forward" not in m.__dict__ for m in net.modules())
