"""Nothing the package keeps process-wide holds a user's model alive or grows without bound."""

import ast
import gc
import weakref
from pathlib import Path

import numpy as np
from torch import nn

import sklearn_layers
from sklearn_layers import IntermediateLayerClassifier, LayerFeatureTransformer
from sklearn_layers.utils.toy import make_mlp

PACKAGE = Path(sklearn_layers.__file__).parent


def test_creating_and_dropping_a_thousand_models_leaves_none_alive():
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    y = np.array([0, 1, 0, 1, 0, 1])
    refs = []
    for i in range(1000):
        net = make_mlp(seed=i)
        refs.append(weakref.ref(net))
        if i % 2:
            LayerFeatureTransformer(net, layers="all").fit_transform(X)  # cache
        else:
            LayerFeatureTransformer(net, layers="3", cache=None).fit_transform(X)
        if i % 250 == 0:
            IntermediateLayerClassifier(net, layers=["1", "3"], cv=2).fit(X, y)
        del net
    gc.collect()
    alive = sum(ref() is not None for ref in refs)
    assert alive == 0, f"{alive} of 1000 models are still referenced"


def _module_level_containers(tree):
    """Names bound at module level to a dict, set or ordered dict (a registry)."""
    names = set()
    for node in tree.body:
        targets, value = [], None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        plain = isinstance(value, (ast.Dict, ast.Set)) or (
            isinstance(value, ast.Call)
            and getattr(value.func, "id", getattr(value.func, "attr", None))
            in {"dict", "set", "OrderedDict", "defaultdict"}
        )
        if plain:
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def _calls_id(node):
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "id"
        for n in ast.walk(node)
    )


def test_no_module_level_registry_is_keyed_by_id():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        registries = _module_level_containers(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and getattr(node.value, "id", None) in registries:
                if _calls_id(node.slice):
                    offenders.append(f"{path.name}:{node.lineno}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and getattr(node.func.value, "id", None) in registries
                and node.args
                and _calls_id(node.args[0])
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, offenders


def test_the_registry_check_finds_an_id_keyed_registry():
    source = "_SEEN = {}\n\ndef f(x):\n    _SEEN[id(x)] = x\n    return _SEEN.get(id(x))\n"
    tree = ast.parse(source)
    registries = _module_level_containers(tree)
    hits = [n for n in ast.walk(tree)
            if isinstance(n, ast.Subscript) and getattr(n.value, "id", None) in registries
            and _calls_id(n.slice)]
    assert registries == {"_SEEN"} and len(hits) == 1


def test_shared_submodule_modes_are_released():
    from sklearn_layers._extraction._capture import _MODE_USERS

    trunk = nn.Linear(4, 4)
    net = nn.Sequential(trunk, nn.ReLU())
    LayerFeatureTransformer(net, layers="0", cache=None).fit_transform(np.ones((2, 4)))
    assert len(_MODE_USERS) == 0


def test_what_a_cache_remembers_about_a_model_dies_with_the_model():
    from sklearn_layers import MemoryCache

    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    cache = MemoryCache()
    net = make_mlp()
    LayerFeatureTransformer(net, layers="all", cache=cache).fit_transform(X)
    memo = cache.identity_memo
    assert len(memo.tensors) == len(list(net.parameters()))
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None and len(memo.tensors) == 0  # held weakly


def test_the_extraction_modules_hold_no_state_between_calls():
    # what the cache remembers lives on the cache object: the modules keep no
    # dict, set or weak dict of models, tensors, classes or caches
    import sklearn_layers._extraction as extraction

    offenders = []
    for path in Path(extraction.__file__).parent.glob("_*.py"):
        source = path.read_text()
        for name in ("WeakKeyDictionary()", "WeakIdKeyDictionary()", "WeakValueDictionary()"):
            for line in source.splitlines():
                if name in line and not line.startswith(" "):
                    offenders.append(f"{path.name}: {line}")
        offenders += [f"{path.name}: {name}" for name in _module_level_containers(ast.parse(source))]
    allowed = {"_capture.py: _MODE_USERS = weakref.WeakKeyDictionary()"}  # see its docstring
    assert set(offenders) <= allowed, offenders
