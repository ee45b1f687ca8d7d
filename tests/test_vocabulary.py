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
from sklearn_layers.utils.toy import make_mlp

PUBLIC = [getattr(sklearn_layers, name) for name in sklearn_layers.__all__]
ESTIMATORS = sorted(
    {obj for obj in PUBLIC if isinstance(obj, type) and issubclass(obj, BaseEstimator)},
    key=lambda cls: cls.__name__,
)
FUNCTIONS = [obj for obj in PUBLIC if inspect.isfunction(obj) and obj.__name__ != "default_probe"]

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
    assert len(ESTIMATORS) >= 6 and len(FUNCTIONS) >= 2


@pytest.mark.parametrize("obj", ESTIMATORS + FUNCTIONS, ids=lambda o: o.__name__)
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
    args = (make_mlp,) if "model" in inspect.signature(cls).parameters else ()
    estimator = cls(*args)
    assert set(estimator.get_params(deep=False)) == set(
        inspect.signature(cls).parameters
    )


def test_network_estimators_share_the_extraction_vocabulary():
    network = [cls for cls in ESTIMATORS if "model" in inspect.signature(cls).parameters]
    shared = {"layers", "pooling", "cache", "batch_size", "device", "tokenizer",
              "max_length", "preprocess", "n_threads", "verbose"}
    for cls in network:
        missing = shared - set(defaults(cls))
        assert not missing, f"{cls.__name__} lacks {sorted(missing)}"
