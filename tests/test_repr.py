import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

import sklearn_layers
from sklearn_layers import (
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    PrototypeClassifier,
)
from sklearn_layers.utils._repr import DOCS_URL, ReprMixin, _count, summarize
from sklearn_layers.utils.toy import make_mlp, make_resnet18

API_RST = Path(__file__).resolve().parents[1] / "docs" / "api.rst"


def public_estimators():
    names = set(sklearn_layers.__all__) | set(sklearn_layers.heads.__all__)
    classes = {getattr(sklearn_layers, n, None) or getattr(sklearn_layers.heads, n)
               for n in names}
    estimators = (c for c in classes
                  if isinstance(c, type) and issubclass(c, BaseEstimator))
    return sorted(estimators, key=lambda c: c.__name__)


def documented_top_level_names():
    """Names listed by autosummary while ``currentmodule`` is ``sklearn_layers``."""
    names, module = set(), None
    for line in API_RST.read_text().splitlines():
        line = line.strip()
        if line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
        elif module == "sklearn_layers" and re.fullmatch(r"[A-Za-z_]\w*", line):
            names.add(line)
    return names


def n_parameters(module):
    return sum(p.numel() for p in module.parameters())


def test_every_public_estimator_uses_the_mixin_and_links_to_its_page():
    estimators = public_estimators()
    assert {"LayerFeatureTransformer", "IntermediateLayerClassifier",
            "PrototypeClassifier", "KNNInterpolatedClassifier", "GrowNetClassifier",
            "GrowNetRegressor"} <= {c.__name__ for c in estimators}
    documented = documented_top_level_names()
    base = DOCS_URL.format(version="latest" if "dev" in sklearn_layers.__version__
                           else "stable")
    for cls in estimators:
        assert issubclass(cls, ReprMixin), cls
        assert cls.__mro__.index(ReprMixin) < cls.__mro__.index(BaseEstimator)
        # the page the link names is one the API reference generates
        assert cls.__name__ in documented, cls
        estimator = cls.__new__(cls)
        assert estimator._get_doc_link() == (
            f"{base}generated/sklearn_layers.{cls.__name__}.html")


def test_text_repr_of_a_network_is_its_class_and_size():
    net = make_resnet18()
    text = repr(LayerFeatureTransformer(net))
    size = f"{n_parameters(net) / 1e6:.1f}M"
    assert text == f"LayerFeatureTransformer(model=ResNet18({size} parameters))"
    ilc = IntermediateLayerClassifier(make_mlp(4, hidden=(8,)), cv=3)
    assert repr(ilc) == (
        "IntermediateLayerClassifier(cv=3, extractor=Sequential(67 parameters))")
    # estimators without a network print as scikit-learn prints them
    assert repr(PrototypeClassifier(metric="euclidean")) == (
        "PrototypeClassifier(metric='euclidean')")


def test_repr_changes_nothing_and_params_stay_real():
    net = make_resnet18()
    transformer = LayerFeatureTransformer(net, layers="layer3")
    before = dict(vars(transformer))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    repr(transformer)
    transformer._repr_html_()
    assert vars(transformer) == before
    assert transformer.model is net and transformer.get_params()["model"] is net
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert not hasattr(net, "text")  # no summary leaked onto the network


def test_clone_and_grid_search_see_the_real_network():
    net = make_mlp(4, hidden=(8, 6))
    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    y = np.arange(60) % 2
    pipe = Pipeline([("features", LayerFeatureTransformer(net)),
                     ("head", PrototypeClassifier())])
    assert clone(pipe).named_steps["features"].model is net
    grid = GridSearchCV(pipe, {"features__layers": [0, 1]}, cv=2).fit(X, y)
    assert grid.best_estimator_.named_steps["features"].model is net
    best = grid.best_estimator_.named_steps["features"]
    assert isinstance(best.model_, torch.nn.Module)


def test_html_repr_links_to_the_api_page_and_shows_the_short_network():
    net = make_resnet18()
    transformer = LayerFeatureTransformer(net, layers="layer3")
    html = transformer._repr_html_()
    url = transformer._get_doc_link()
    assert url.endswith("generated/sklearn_layers.LayerFeatureTransformer.html")
    assert f'href="{url}"' in html
    short = f"ResNet18({n_parameters(net) / 1e6:.1f}M parameters)"
    assert short in html
    assert "Conv2d(" not in html  # neither the parameter table nor the text fallback


def test_html_fitted_attributes_show_the_short_network():
    net = make_mlp(4, hidden=(8,))
    X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    transformer = LayerFeatureTransformer(net, layers=0, cache=None).fit(X)
    html = transformer._repr_html_()
    assert "Linear(in_features" not in html
    assert "Sequential(67 parameters)" in html
    attributes = transformer._get_fitted_attr_html()
    assert repr(attributes["model_"]["value"]) == "Sequential(67 parameters)"
    assert transformer.model_ is not attributes["model_"]["value"]


def test_pipeline_diagram_shows_the_short_network():
    # a Pipeline prints its steps' parameters itself in the text repr; its HTML
    # diagram asks each step for its repr and parameter table
    net = make_resnet18()
    pipe = Pipeline([("features", LayerFeatureTransformer(net)),
                     ("head", PrototypeClassifier())])
    html = pipe._repr_html_()
    assert "sklearn_layers.LayerFeatureTransformer.html" in html
    assert "sklearn_layers.PrototypeClassifier.html" in html
    assert html.count("ResNet18(") >= 2  # the step's details and its parameter table


def test_concurrent_reprs_agree():
    transformer = LayerFeatureTransformer(make_resnet18())
    expected = repr(transformer)
    seen, errors = [], []

    def work():
        try:
            for _ in range(30):
                seen.append(repr(transformer))
                model = transformer.get_params()["model"]
                assert type(model).__name__ == "ResNet18"
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and set(seen) == {expected}


@pytest.mark.parametrize("n, text", [(0, "0"), (999, "999"), (1000, "1.0k"),
                                     (390_410, "390.4k"), (22_713_216, "22.7M"),
                                     (7_000_000_000, "7.0B")])
def test_parameter_counts(n, text):
    assert _count(n) == text


def test_summaries_of_other_values():
    lazy = torch.nn.LazyLinear(3)
    assert repr(summarize(lazy)) == "LazyLinear(uninitialized parameters)"
    assert summarize("penultimate") == "penultimate"
    shared = torch.nn.Linear(3, 3)
    tied = torch.nn.Sequential(shared, shared)  # shared weights count once
    assert repr(summarize(tied)) == "Sequential(12 parameters)"


@pytest.mark.slow
def test_minilm_and_its_tokenizer_print_short():
    from sklearn_layers.models import load_minilm

    model, tokenizer = load_minilm()
    transformer = LayerFeatureTransformer(model, tokenizer=tokenizer)
    assert repr(transformer) == (
        "LayerFeatureTransformer(model=BertModel(22.7M parameters), "
        "tokenizer=BertTokenizer(vocab_size=30522))"
    )
    assert "added_tokens_decoder" not in transformer._repr_html_()
    assert transformer.get_params()["tokenizer"] is tokenizer
