"""prepare_for_deployment: a pickled winner, in a fresh process, runs only what it uses."""

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_layers import (
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    MemoryCache,
    prepare_for_deployment,
)
from sklearn_layers.utils.toy import make_mlp

# In a fresh interpreter: load the pickle, count the rows each top-level module
# of the network computes while predicting new rows, and the entries of the
# process-wide default cache afterwards.
FRESH_PROCESS = r"""
import json, pickle, sys
import numpy as np
from sklearn_layers._extraction._cache import make_cache

with open(sys.argv[1], "rb") as f:
    winner = pickle.load(f)
net = winner.best_estimator_[0].model if hasattr(winner, "best_estimator_") else winner[0].model
rows = {}
for name, module in net.named_children():
    module.register_forward_hook(
        lambda m, args, out, name=name: rows.__setitem__(name, rows.get(name, 0) + len(out)))
new = np.random.default_rng(1).normal(size=(int(sys.argv[2]), 4))
winner.predict(new)
print(json.dumps({"rows": rows, "default_cache_entries": len(make_cache("memory"))}))
"""


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    return X, (X[:, 0] > 0).astype(int)


def grid(net):
    pipe = Pipeline([("features", LayerFeatureTransformer(net)),
                     ("head", LogisticRegression())])
    return GridSearchCV(pipe, {"features__layers": ["0", "1"]}, cv=3)


def predict_in_a_fresh_process(tmp_path, winner, n_new):
    path = tmp_path / "winner.pkl"
    path.write_bytes(pickle.dumps(winner))
    out = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(path), str(n_new)],
                         capture_output=True, text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_winner_runs_to_its_deepest_layer_and_stores_nothing(tmp_path, data):
    X, y = data
    net = make_mlp(4, hidden=(16, 8, 8))  # children "0" .. "6"
    search = grid(net).fit(X, y)
    deepest = search.best_estimator_[0].layer_names_
    assert deepest in (["0"], ["1"])
    as_fitted = predict_in_a_fresh_process(tmp_path, search, 25)
    # as fitted, every block of each new row runs and fills the default cache
    assert as_fitted["rows"] == {str(i): 25 for i in range(7)}
    assert as_fitted["default_cache_entries"] > 0

    expected = search.predict(X[:10])
    assert prepare_for_deployment(search) is search
    np.testing.assert_array_equal(search.predict(X[:10]), expected)
    deployed = predict_in_a_fresh_process(tmp_path, search, 25)
    last = int(deepest[0])
    assert deployed["rows"] == {str(i): 25 for i in range(last + 1)}
    assert deployed["default_cache_entries"] == 0


def test_a_cache_passed_explicitly_is_kept_and_stores_only_the_layers_used(data):
    X, y = data
    cache = MemoryCache()
    pipe = Pipeline([("features", LayerFeatureTransformer(make_mlp(), layers="0",
                                                          cache=cache)),
                     ("head", LogisticRegression())]).fit(X, y)
    prepare_for_deployment(pipe)
    assert pipe[0].cache is cache and pipe[0].prefetch is False
    before = len(cache)
    pipe.predict(np.random.default_rng(2).normal(size=(5, 4)))
    assert len(cache) == before + 5  # one entry per new row: layer "0" only


def test_a_selectors_fitted_extractor_is_switched_and_unfitted_ones_left_alone(data):
    X, y = data
    ilc = IntermediateLayerClassifier(make_mlp(), layers=["0", "1"], cv=2).fit(X, y)
    expected = ilc.predict(X)
    prepare_for_deployment(ilc)
    assert ilc.extractor_.cache is None and ilc.extractor_.prefetch is False
    np.testing.assert_array_equal(ilc.predict(X), expected)
    unfitted = Pipeline([("features", LayerFeatureTransformer(make_mlp())),
                         ("head", LogisticRegression())])
    prepare_for_deployment(unfitted)
    assert unfitted[0].cache == "memory" and unfitted[0].prefetch is True
