"""One parameter vocabulary across the package, so that it cannot drift.

scikit-learn's words where it has one: ``verbose`` an int (0 silent),
``n_jobs`` joblib workers and ``n_threads`` torch's intra-op threads (both
``None`` by default: leave the setting alone), ``estimator`` for a wrapped
estimator, ``working_memory`` for chunking, ``random_state`` for randomness,
``temperature`` a softmax temperature (logits divided by it).
"""

import inspect
import numbers

import pytest
from sklearn.base import BaseEstimator

import sklearn_layers
import sklearn_layers.dask
import sklearn_layers.datasets
import sklearn_layers.models
import sklearn_layers.utils.toy
from sklearn_layers.utils.toy import make_mlp

PUBLIC_MODULES = [sklearn_layers, sklearn_layers.heads, sklearn_layers.metrics,
                  sklearn_layers.datasets, sklearn_layers.models, sklearn_layers.dask,
                  sklearn_layers.utils.toy]
PUBLIC = [getattr(module, name) for module in PUBLIC_MODULES
          for name in getattr(module, "__all__", [n for n in dir(module)
                                                  if not n.startswith("_")])]
ESTIMATORS = sorted(
    {obj for obj in PUBLIC if isinstance(obj, type) and issubclass(obj, BaseEstimator)},
    key=lambda cls: cls.__name__,
)
# the package's own public functions, in every public module (imports from
# elsewhere excluded)
FUNCTIONS = sorted(
    {obj for obj in PUBLIC if inspect.isfunction(obj)
     and obj.__module__.startswith("sklearn_layers") and obj.__name__ != "default_probe"},
    key=lambda f: (f.__module__, f.__name__),
)
# everything LayerFeatureTransformer owns: a layer-level estimator takes the
# extractor itself instead of a copy of these
EXTRACTION_SETTINGS = {"pooling", "cache", "batch_size", "device", "tokenizer",
                       "max_length", "preprocess", "prefetch", "n_threads"}

# words scikit-learn does not use for these jobs, or that this package retired
RETIRED = {
    "head": "estimator",
    "base_estimator": "estimator",
    "chunk_size": "working_memory",
    "n_estimators": "max_iter (as HistGradientBoosting)",
    "inverse_temperature": "a temperature",
}


def defaults(obj):
    """Parameter name -> default of a class's __init__ or a function."""
    target = obj.__init__ if isinstance(obj, type) else obj
    return {
        name: p.default
        for name, p in inspect.signature(target).parameters.items()
        if p.kind is p.KEYWORD_ONLY or p.default is not p.empty
    }


def test_there_is_something_to_check():
    assert len(ESTIMATORS) >= 6 and len(FUNCTIONS) >= 10
    assert sklearn_layers.layer_sweep in FUNCTIONS
    assert sklearn_layers.metrics.effective_rank in FUNCTIONS


@pytest.mark.parametrize("obj", ESTIMATORS + FUNCTIONS,
                         ids=lambda o: f"{o.__module__.rsplit('.', 1)[-1]}.{o.__name__}")
def test_vocabulary(obj):
    params = defaults(obj)
    for old, new in RETIRED.items():
        assert old not in params, f"{obj.__name__}: {old!r} is spelled {new}"
    if "verbose" in params:
        value = params["verbose"]
        assert isinstance(value, numbers.Integral) and not isinstance(value, bool), (
            f"{obj.__name__}: verbose is an int (0 silent), default {value!r}"
        )
        assert value == 0
    for name in ("n_jobs", "n_threads", "working_memory"):
        if name in params:
            assert params[name] is None, f"{obj.__name__}: {name} defaults to None"
    if "random_state" in params:
        assert params["random_state"] in (None, 0), obj.__name__
    for name, value in params.items():
        if name.endswith("temperature"):
            assert isinstance(value, numbers.Real) and value > 0, (obj.__name__, name)
        if isinstance(value, BaseEstimator):
            assert name in ("estimator", "final_estimator"), (
                f"{obj.__name__}: a wrapped estimator is named 'estimator', not {name!r}"
            )


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_get_params_matches_the_signature(cls):
    parameters = inspect.signature(cls).parameters
    args = (make_mlp,) if {"model", "extractor"} & set(parameters) else ()
    estimator = cls(*args)
    assert set(estimator.get_params(deep=False)) == set(parameters)


LAYER_LEVEL = [obj for obj in ESTIMATORS + FUNCTIONS
               if "extractor" in inspect.signature(obj).parameters]


def test_layer_level_estimators_take_the_extractor_first():
    names = {obj.__name__ for obj in LAYER_LEVEL}
    assert {"IntermediateLayerClassifier", "LayerFusionClassifier", "layer_sweep",
            "layer_metrics"} <= names
    for obj in LAYER_LEVEL:
        first = next(iter(inspect.signature(obj).parameters))
        assert first == "extractor", f"{obj.__name__} takes {first!r} first"


@pytest.mark.parametrize("obj", LAYER_LEVEL, ids=lambda o: o.__name__)
def test_extraction_settings_live_once_on_the_extractor(obj):
    copied = EXTRACTION_SETTINGS & set(inspect.signature(obj).parameters)
    assert not copied, f"{obj.__name__} copies {sorted(copied)} of LayerFeatureTransformer"
