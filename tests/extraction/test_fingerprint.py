"""The model identity: everything that can change a network's outputs is in its key."""

import copy
import functools

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal
from torch import nn

from sklearn_layers import LayerFeatureTransformer, MemoryCache
from sklearn_layers._extraction._fingerprint import model_fingerprint
from sklearn_layers.utils.toy import make_mlp

from _float32 import same_features, same_features_of_any


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)


def features(net, X, cache, layers="output"):
    return LayerFeatureTransformer(net, layers=layers, cache=cache).fit_transform(X)


def uncached(net, X, layers="output"):
    return features(net, X, None, layers)


def assert_served_like_uncached(a, b, X, layers="output"):
    """Both nets through one cache give each net's own uncached features."""
    cache = MemoryCache()
    for net in (a, b, a, b):
        got = features(net, X, cache, layers)
        # row 0 of a cached extraction comes from fit's one-row probe
        same_features_of_any(net, X, [layers], got, uncached(net, X, layers))
    assert not np.allclose(uncached(a, X, layers), uncached(b, X, layers))


def relu_tanh_pair():
    a = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    b = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    b.load_state_dict(a.state_dict())
    return a, b


def test_same_weights_other_activation(X):
    assert_served_like_uncached(*relu_tanh_pair(), X)


def test_conv_stride_is_part_of_the_identity():
    a = nn.Sequential(nn.Conv2d(1, 2, 3, stride=1), nn.Flatten())
    b = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.AdaptiveAvgPool2d(4), nn.Flatten())
    b[0].load_state_dict(a[0].state_dict())
    a = nn.Sequential(a[0], nn.AdaptiveAvgPool2d(4), nn.Flatten())
    images = np.random.default_rng(1).normal(size=(6, 1, 9, 9)).astype(np.float32)
    assert model_fingerprint(a) != model_fingerprint(b)
    assert_served_like_uncached(a, b, images)


class Scaled(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale = scale

    def forward(self, x):
        return self.linear(x) * self.scale


def test_plain_attribute_is_part_of_the_identity(X):
    a, b = Scaled(1.0), Scaled(3.0)
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)


def test_submodule_swapped_in_place(X):
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    cache = MemoryCache()
    before = features(net, X, cache)
    net[1] = nn.Tanh()
    after = features(net, X, cache)
    assert not np.allclose(before, after)
    same_features_of_any(net, X, ["output"], after, uncached(net, X))


class TwiceForward(Scaled):
    def forward(self, x):
        return 2 * self.linear(x) * self.scale


def test_forward_code_is_part_of_the_identity(X):
    a = Scaled(1.0)
    b = TwiceForward(1.0)
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)


def test_monkeypatched_forward_is_seen(X, monkeypatch):
    net = Scaled(1.0)
    cache = MemoryCache()
    before = features(net, X, cache)
    monkeypatch.setattr(Scaled, "forward", TwiceForward.forward)
    after = features(net, X, cache)
    # the same batches; doubling is exact in float32 and commutes with rounding
    assert_array_equal(after, 2 * before)


def test_buffers_dtype_and_non_persistent_buffers(X):
    class Shifted(nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.linear = nn.Linear(4, 3)
            self.register_buffer("shift", torch.full((3,), shift), persistent=False)

        def forward(self, x):
            return self.linear(x) + self.shift

    a, b = Shifted(0.0), Shifted(1.0)
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)
    c = copy.deepcopy(a).double()
    assert model_fingerprint(c) != model_fingerprint(a)


def test_edit_through_data_is_seen_on_cpu(X):
    # .data bypasses the version counter; CPU tensors are hashed on every call
    net = make_mlp()
    cache = MemoryCache()
    before = features(net, X, cache, layers="1")
    net[0].weight.data.mul_(2.0)
    after = features(net, X, cache, layers="1")
    assert not np.allclose(before, after)
    same_features(net, X, ["1"], after, uncached(net, X, layers="1"))


def test_hooks_are_covered_by_their_code(X):
    net = make_mlp()
    cache = MemoryCache()
    plain = features(net, X, cache)

    def double(module, args, output):
        return output * 2

    handle = net[2].register_forward_hook(double)
    try:
        doubled = features(net, X, cache)
    finally:
        handle.remove()
    assert not np.allclose(plain, doubled)
    assert_array_equal(features(net, X, cache), plain)  # served as stored


def test_a_lambda_attribute_makes_the_model_uncacheable(X):
    net = Scaled(1.0)
    net.post = lambda t: t  # a plain attribute whose behaviour no name captures
    assert model_fingerprint(net) is None
    cache = MemoryCache()
    features(net, X, cache)
    assert len(cache) == 0


class Shifted(nn.Module):
    """Adds what ``shift`` (a callable attribute) gives, then reads ``cols`` of it."""

    def __init__(self, shift, cols=slice(None), act=nn.Identity):
        super().__init__()
        self.linear, self.shift, self.cols, self.act = nn.Linear(4, 3), shift, cols, act

    def forward(self, x):
        return self.act()(self.shift(self.linear(x))[:, self.cols])


def test_a_builtin_bound_to_an_object_makes_the_model_uncacheable(X):
    # tensor.add carries its tensor: no name shows it
    from sklearn_layers._extraction._identity import function_name

    a, b = Shifted(torch.tensor([0.0]).add), Shifted(torch.tensor([100.0]).add)
    assert model_fingerprint(a) is None and model_fingerprint(b) is None
    assert function_name({}.get) is None
    assert function_name(torch.relu) is not None and function_name(len) is not None


@pytest.mark.parametrize("first, second", [
    ({"cols": slice(0, 2)}, {"cols": slice(1, 3)}),
    ({"cols": range(0, 2)}, {"cols": range(1, 3)}),
    ({"act": nn.ReLU}, {"act": nn.Tanh}),
], ids=["slice", "range", "class"])
def test_slices_ranges_and_classes_held_as_attributes_are_part_of_the_identity(
        X, first, second):
    a, b = Shifted(torch.relu, **first), Shifted(torch.relu, **second)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)
    assert_served_like_uncached(a, b, X)


class Weighted(nn.Module):
    """Concatenates its input scaled by each weight of ``scales``, in the dict's order."""

    def __init__(self, scales):
        super().__init__()
        self.linear, self.scales = nn.Linear(4, 2), scales

    def forward(self, x):
        return torch.cat([self.linear(x) * w for w in self.scales.values()], dim=1)


def test_a_dicts_order_is_part_of_the_identity(X):
    a, b = Weighted({"low": 1.0, "high": 3.0}), Weighted({"high": 3.0, "low": 1.0})
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)
    assert_served_like_uncached(a, b, X)


def test_fingerprint_is_stable_and_content_based():
    a, b = make_mlp(seed=0), make_mlp(seed=0)
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(make_mlp(seed=1))
    # deep copies and pickles are the same network
    assert model_fingerprint(copy.deepcopy(a)) == model_fingerprint(a)


def test_hugging_face_style_config_is_part_of_the_identity(X):
    class Config:
        def __init__(self, act):
            self.act = act

        def to_dict(self):
            return {"act": self.act}

    class Configured(nn.Module):
        def __init__(self, act):
            super().__init__()
            self.config = Config(act)
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            y = self.linear(x)
            return torch.relu(y) if self.config.act == "relu" else torch.tanh(y)

    a, b = Configured("relu"), Configured("tanh")
    b.load_state_dict(a.state_dict())
    assert_served_like_uncached(a, b, X)


def test_partial_and_builtin_names():
    from sklearn_layers._extraction._identity import code_name, function_name

    def f(x, k=1):
        return x * k

    assert function_name(torch.relu) is not None
    assert function_name(f) is None  # defaults: state the code does not show
    assert code_name(functools.partial(f, k=2)) != code_name(functools.partial(f, k=3))


def make_class_scaled(scale):
    # a class defined again with another constant, as a re-run notebook cell does
    class ClassScaled(nn.Module):
        SCALE = scale

        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            return self.linear(x) * self.SCALE

    return ClassScaled()


def test_class_attribute_is_part_of_the_identity(X, monkeypatch):
    a, b = make_class_scaled(1.0), make_class_scaled(3.0)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)
    assert_served_like_uncached(a, b, X)
    before = model_fingerprint(a)
    monkeypatch.setattr(type(a), "SCALE", 2.0)  # edited on the class itself
    assert model_fingerprint(a) != before


class Holding(nn.Module):
    """Scales by the first number found in whatever it holds."""

    def __init__(self, held):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.held = held

    def forward(self, x):
        value = self.held
        while isinstance(value, (list, tuple, dict)):
            value = next(iter(value.values())) if isinstance(value, dict) else value[0]
        return self.linear(x) * torch.as_tensor(np.asarray(value)).reshape(-1)[0]


@pytest.mark.parametrize(
    "hold",
    [
        lambda v: [torch.tensor(v)],
        lambda v: {"scale": (torch.tensor([v]), "label")},
        lambda v: np.array([v], dtype=np.float32),
        lambda v: [np.array([[v]])],
        lambda v: (np.float32(v),),
    ],
    ids=["tensor-in-list", "tensor-in-dict-of-tuple", "array", "array-in-list",
         "numpy-scalar"],
)
def test_arrays_and_tensors_in_containers_are_hashed_by_content(X, hold):
    a, b = Holding(hold(1.0)), Holding(hold(3.0))
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)
    same = Holding(hold(1.0))
    same.load_state_dict(a.state_dict())
    assert model_fingerprint(same) == model_fingerprint(a)  # content, not identity
    assert_served_like_uncached(a, b, X)


def test_an_array_edited_in_place_is_seen():
    net = Holding(np.array([1.0], dtype=np.float32))
    before = model_fingerprint(net)
    net.held[0] = 5.0
    assert model_fingerprint(net) != before


def passthrough(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def make_decorated(decorator, twice):
    class Decorated(Scaled):
        if twice:
            @decorator
            def forward(self, x):
                return 2 * self.linear(x) * self.scale
        else:
            @decorator
            def forward(self, x):
                return self.linear(x) * self.scale

    return Decorated(1.0)


@pytest.mark.parametrize("decorator", [passthrough, torch.no_grad()],
                         ids=["functools.wraps", "torch.no_grad"])
def test_decorated_forward_is_covered_by_the_code_it_wraps(X, decorator):
    a, b = make_decorated(decorator, False), make_decorated(decorator, True)
    b.load_state_dict(a.state_dict())
    assert model_fingerprint(a) != model_fingerprint(b)
    assert_served_like_uncached(a, b, X)


def times(k):
    def decorator(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            return f(*args, **kwargs) * k

        return wrapper

    return decorator


def make_multiplied(k, default):
    class Multiplied(Scaled):
        @times(k)
        def forward(self, x, offset=default):
            return self.linear(x) * self.scale + offset

    return Multiplied(1.0)


def test_decorator_arguments_and_default_values_are_part_of_the_identity():
    a = make_multiplied(2.0, 0.0)

    def fingerprint(k, default):
        net = make_multiplied(k, default)
        net.load_state_dict(a.state_dict())
        return model_fingerprint(net)

    assert fingerprint(2.0, 0.0) == model_fingerprint(a)
    assert fingerprint(3.0, 0.0) != model_fingerprint(a)
    assert fingerprint(2.0, 1.0) != model_fingerprint(a)


def test_autocast_is_part_of_the_identity(X):
    net = make_mlp()
    cache = MemoryCache()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = features(net, X, cache)
    full = features(net, X, cache)
    assert not np.allclose(low, full)  # bfloat16 keeps 8 bits
    same_features_of_any(net, X, ["output"], full, uncached(net, X))


@pytest.mark.parametrize(
    "setting, value",
    [
        ("float32_matmul_precision", "medium"),
        ("cuda.matmul.allow_tf32", True),
        ("cudnn.allow_tf32", False),
        ("cuda.matmul.allow_fp16_reduced_precision_reduction", False),
        ("default_dtype", torch.float64),
        # the newer API (torch >= 2.9): bfloat16 matmuls on the CPU; and TF32
        # set this way makes torch refuse to read the legacy flags
        ("mkldnn.matmul.fp32_precision", "bf16"),
        ("cuda.matmul.fp32_precision", "tf32"),
    ],
)
def test_numeric_settings_are_part_of_the_identity(setting, value):
    from sklearn_layers._extraction._fingerprint import cache_identity

    new_api = hasattr(torch.backends, "fp32_precision")
    if setting.endswith("fp32_precision") and not new_api:
        pytest.skip("torch < 2.9 has no fp32_precision settings")

    net = make_mlp()

    def identity():
        return cache_identity(net, {"output": "auto"}, cache=MemoryCache(),
                              cacheable=True, device=torch.device("cpu"),
                              float_dtype=torch.float32)

    before = identity()
    if setting == "float32_matmul_precision":
        saved = torch.get_float32_matmul_precision()
        set_ = torch.set_float32_matmul_precision
    elif setting == "default_dtype":
        saved, set_ = torch.get_default_dtype(), torch.set_default_dtype
    else:
        owner, _, attribute = setting.rpartition(".")
        owner = functools.reduce(getattr, owner.split("."), torch.backends)
        saved = getattr(owner, attribute)

        def set_(v):
            setattr(owner, attribute, v)

    try:
        set_(value)
        changed = identity()
        assert changed != before
    finally:
        set_(saved)
    # set back, a precision may read "ieee" where it read "none" (its default):
    # another name for the same rounding, which costs a miss, never a wrong hit
    assert identity() != changed


def test_content_is_hashed_once_per_model_state(monkeypatch):
    from sklearn_layers._extraction import _fingerprint

    hashed = []
    content_digest = _fingerprint._content_digest
    monkeypatch.setattr(_fingerprint, "_content_digest",
                        lambda t: hashed.append(t) or content_digest(t))
    memo = _fingerprint.IdentityMemo()
    net = make_mlp()
    n_tensors = len(list(net.parameters()))
    first = model_fingerprint(net, memo)
    assert len(hashed) == n_tensors
    assert model_fingerprint(net, memo) == first
    assert len(hashed) == n_tensors  # every tensor served from the memo
    with torch.no_grad():
        net[0].weight.add_(1.0)  # in place: bumps the version counter
    edited = model_fingerprint(net, memo)
    assert edited != first and len(hashed) == n_tensors + 1  # only that tensor again
    net[0].weight.data.mul_(2.0)  # bypasses the version counter: a sampled value changes
    assert model_fingerprint(net, memo) not in (first, edited)
    net[2].bias.data = torch.zeros_like(net[2].bias)  # replaced storage
    replaced = model_fingerprint(net, memo)
    assert replaced == model_fingerprint(net)  # the memo never changes the key
    state = {k: v + 1 for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    assert model_fingerprint(net, memo) == model_fingerprint(net) != replaced


def test_optimiser_step_changes_the_key():
    net = make_mlp()
    cache = MemoryCache()
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    before = features(net, X, cache, layers="3")
    optimiser = torch.optim.SGD(net.parameters(), lr=0.5)
    net(torch.as_tensor(X)).sum().backward()
    optimiser.step()
    after = features(net, X, cache, layers="3")
    same_features(net, X, ["3"], after, uncached(net, X, layers="3"))
    assert not np.allclose(before, after)


def test_numeric_settings_restored_to_the_default_equal_a_fresh_process():
    # torch cannot set an fp32_precision back to "none" (its start-up value):
    # "highest" again reads "ieee". A worker process started fresh reads
    # "none"; both compute the same, so both must share cache entries.
    import subprocess
    import sys

    from sklearn_layers._extraction._fingerprint import numeric_settings

    code = ("import torch; from sklearn_layers._extraction._fingerprint import numeric_settings;"
            "print(numeric_settings(torch.device('cpu')))")
    previous = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        torch.set_float32_matmul_precision("highest")
        here = numeric_settings(torch.device("cpu"))
    finally:
        torch.set_float32_matmul_precision(previous)
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout.strip()
    assert here == fresh


# --- the same key in every process ------------------------------------------------

_EVERY_NN_LAYER = r'''
import inspect, json, sys, warnings
import torch
from torch import nn
from sklearn_layers._extraction._fingerprint import model_fingerprint

VALUES = {"num_heads": 2, "nhead": 2, "p": 0.5, "dim": 1, "num_groups": 2, "kernel_size": 3,
          "lambd": 0.5, "upscale_factor": 2, "downscale_factor": 2, "output_size": 2,
          "num_embeddings": 10, "cutoffs": [4, 8], "n_classes": 10, "unflattened_size": (2, 2),
          "size": 4, "padding": 1, "output_ratio": 0.5}
SPECIAL = {"RNNBase": lambda: nn.RNNBase("LSTM", 4, 4), "RNN": lambda: nn.RNN(4, 4),
           "LSTM": lambda: nn.LSTM(4, 4, 2), "GRU": lambda: nn.GRU(4, 4, bidirectional=True),
           "TransformerEncoder": lambda: nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2),
           "TransformerDecoder": lambda: nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 2),
           "FractionalMaxPool2d": lambda: nn.FractionalMaxPool2d(2, output_ratio=0.5),
           "FractionalMaxPool3d": lambda: nn.FractionalMaxPool3d(2, output_ratio=0.5)}

def build(name, cls):
    torch.manual_seed(0)
    if name in SPECIAL:
        return SPECIAL[name]()
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return cls(**{p.name: VALUES.get(p.name, 4) for p in params
                  if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)})

found = {}
for name in sorted(dir(nn)):
    cls = getattr(nn, name)
    if isinstance(cls, type) and issubclass(cls, nn.Module) and cls is not nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found[name] = model_fingerprint(build(name, cls))
json.dump(found, sys.stdout)
'''


def _in_fresh_interpreter(code, seed):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_every_nn_layer_has_one_key_in_every_process():
    # a set literal in a membership test (``padding_mode not in {...}`` in every
    # convolution) compiles to a frozenset whose order follows the hash seed
    import json

    first, second = (json.loads(_in_fresh_interpreter(_EVERY_NN_LAYER, seed)) for seed in (1, 2))
    assert first == second
    keyed = [name for name, key in first.items() if key is not None]
    assert len(keyed) > 140, sorted(set(first) - set(keyed))
    # a lazy module's parameters do not exist yet: no key, nothing cached
    assert all(first[name] is None for name in first if name.startswith("Lazy"))


_SECOND_RUN = r'''
import sys, numpy as np, torch
from torch import nn
from sklearn_layers import DiskCache, LayerFeatureTransformer
torch.manual_seed(0)
cnn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                    nn.Conv2d(4, 4, 3, padding="same"), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                    nn.Linear(16, 3))
encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2)
X = np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)
tokens = np.random.default_rng(1).normal(size=(64, 5, 8)).astype(np.float32)
counts = []
for net, data, layer in ((cnn, X, "3"), (encoder, tokens, "layers.1")):
    cache = DiskCache(sys.argv[1])
    lft = LayerFeatureTransformer(net, layers=layer, cache=cache).fit(data)
    fitted = cache.n_rows_computed
    lft.transform(data)
    counts += [fitted, cache.n_rows_computed - fitted]
print(counts)
'''


def test_a_second_process_is_served_from_disk(tmp_path):
    code = _SECOND_RUN.replace("sys.argv[1]", repr(str(tmp_path)))
    first = eval(_in_fresh_interpreter(code, 1))
    second = eval(_in_fresh_interpreter(code, 2))
    assert first[1] + first[0] >= 64 and first[3] + first[2] >= 64
    # fit computes one row of its own (widths never come from a file); the
    # transform computes nothing
    assert second == [1, 0, 1, 0]


_MINILM_KEY = r'''
import torch
from sklearn_layers.models import load_minilm
from sklearn_layers._extraction._fingerprint import model_fingerprint
from sklearn_layers._extraction._identity import tokenizer_name
model, tokenizer = load_minilm()
print(model_fingerprint(model), tokenizer_name(tokenizer, 16))
'''


@pytest.mark.slow
def test_minilm_has_one_key_in_every_process():
    first, second = (_in_fresh_interpreter(_MINILM_KEY, seed).split()[-2:] for seed in (1, 2))
    assert first == second and "None" not in first


def test_hook_code_has_one_key_in_every_process():
    code = ("from sklearn_layers._extraction._fingerprint import model_fingerprint\n"
            "from sklearn_layers.utils.toy import make_mlp\n"
            "def count(module, args):\n    return None if type(module).__name__ in {'Linear', 'ReLU', 'Tanh'} else None\n"
            "net = make_mlp(); net[0].register_forward_pre_hook(count)\n"
            "print(model_fingerprint(net))")
    assert _in_fresh_interpreter(code, 1) == _in_fresh_interpreter(code, 2)


class _Tiny(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale = scale

    def forward(self, x):
        return self.linear(x) * self.scale


def test_scripted_traced_and_compiled_models_get_a_key():
    torch.manual_seed(0)
    net = _Tiny(2.0)
    x = torch.zeros(1, 4)
    scripted, traced = torch.jit.script(net), torch.jit.trace(net, x)
    keys = [model_fingerprint(m) for m in (scripted, traced, torch.compile(net))]
    assert None not in keys and len(set(keys)) == 3
    other = _Tiny(3.0)
    other.load_state_dict(net.state_dict())
    # a scripted module's code and constants are part of its key
    assert model_fingerprint(torch.jit.script(other)) != keys[0]


@pytest.mark.slow
def test_padding_side_changed_after_a_transform_is_another_key():
    from sklearn_layers.models import load_minilm

    model, tokenizer = load_minilm()
    texts = ["a short one", "a much longer sentence with many more tokens than the first",
             "a sentence of middling length"]
    cache = MemoryCache()
    lft = LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tokenizer,
                                  cache=cache).fit(texts)
    lft.transform(texts)
    tokenizer.padding_side = "left"
    try:
        before = cache.n_rows_computed
        got = lft.transform(texts)
        fresh = LayerFeatureTransformer(model, layers="encoder.layer.1", tokenizer=tokenizer,
                                        cache=None).fit(texts).transform(texts)
    finally:
        tokenizer.padding_side = "right"
    assert cache.n_rows_computed - before == len(texts)  # nothing served from the right-padded run
    assert_array_equal(got, fresh)


def test_the_package_version_is_part_of_the_key(monkeypatch):
    # a disk cache written by another release (whose poolings may differ) is not served
    from sklearn_layers._extraction import _fingerprint

    net = make_mlp()
    before = model_fingerprint(net)
    monkeypatch.setattr(_fingerprint, "__version__", "0.0.0-another-release", raising=False)
    assert model_fingerprint(net) != before


def test_a_batch_norm_without_running_statistics_is_never_cached(X):
    # it normalises by the batch in eval mode: a row's features depend on its batch
    images = X.reshape(3, 1, 4, 4)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False))
    assert model_fingerprint(net) is None
    cache = MemoryCache()
    with pytest.warns(UserWarning, match="batch norm without running statistics"):
        features(net, images, cache, layers="1")
    assert len(cache) == 0
    tracked = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    assert model_fingerprint(tracked) is not None
