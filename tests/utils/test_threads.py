"""thread_budget: one count for torch, BLAS and OpenMP during a call, the caller's after."""

import threading

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from threadpoolctl import threadpool_info, threadpool_limits

from sklearn_layers import LayerFeatureTransformer
from sklearn_layers.utils._compat import _fit_context
from sklearn_layers.utils._threads import cpu_settings, thread_budget

needs_blas = pytest.mark.skipif(
    not any(lib["user_api"] == "blas" for lib in threadpool_info()),
    reason="no BLAS library that threadpoolctl can see is loaded",
)


def counts():
    """The counts the calling thread runs with: torch, BLAS and OpenMP."""
    info = threadpool_info()
    return {
        "torch": torch.get_num_threads(),
        "blas": {lib["num_threads"] for lib in info if lib["user_api"] == "blas"},
        "openmp": {lib["num_threads"] for lib in info if lib["user_api"] == "openmp"},
    }


def all_at(n):
    return {"torch": n, "blas": {n}, "openmp": {n}}


@pytest.fixture
def caller_counts():
    """A caller whose pools run with counts the budget never uses.

    torch 5 (torch's own OpenMP runtime follows it), BLAS 6, scikit-learn's
    OpenMP runtime 7.
    """
    before = torch.get_num_threads()
    with threadpool_limits(limits=6, user_api="blas"), threadpool_limits(
        limits=7, user_api="openmp"
    ):
        torch.set_num_threads(5)
        try:
            yield counts()
        finally:
            torch.set_num_threads(before)


@needs_blas
def test_one_count_for_every_pool_then_the_callers_back(caller_counts):
    with thread_budget(2):
        assert counts() == all_at(2)
        with thread_budget(1):  # nested: narrowed, then the outer budget again
            assert counts() == all_at(1)
        assert counts() == all_at(2)
    assert counts() == caller_counts
    with pytest.raises(KeyError), thread_budget(3):
        raise KeyError("the body fails")
    assert counts() == caller_counts


@needs_blas
def test_none_is_the_calling_threads_torch_count(caller_counts):
    # the budget follows torch's count, not BLAS's or OpenMP's
    with thread_budget(None):
        assert counts() == all_at(5)
    assert counts() == caller_counts


@needs_blas
def test_a_concurrent_call_leaves_the_process_wide_blas_count_to_the_first(caller_counts):
    # the first call (this thread) holds BLAS at 1; a call in another thread
    # meanwhile gets its own torch and OpenMP counts and the first call's BLAS
    # count, then the caller's once the first call returns; whichever returns
    # first, the caller's counts are back at the end
    for first_returns_first in (True, False):
        entered, first_returned, second_done = (threading.Event() for _ in range(3))
        seen = {}

        def second_call():
            with thread_budget(2):
                seen["inside"] = counts()
                entered.set()
                if first_returns_first:
                    assert first_returned.wait(30)
                    seen["after the first returned"] = counts()
            second_done.set()

        with thread_budget(1):
            other = threading.Thread(target=second_call)
            other.start()
            assert entered.wait(30)
            if not first_returns_first:
                assert second_done.wait(30)
                assert counts() == all_at(1)
        first_returned.set()
        other.join(30)
        assert not other.is_alive()
        assert seen["inside"]["torch"] == 2
        assert seen["inside"]["openmp"] == {2}
        assert seen["inside"]["blas"] == {1}
        if first_returns_first:
            assert seen["after the first returned"]["blas"] == caller_counts["blas"]
        assert counts() == caller_counts


def test_cpu_settings_flushes_denormals_for_the_call_only():
    before = torch.get_num_threads()
    tiny = torch.tensor([1e-30]), torch.tensor([1e-10])  # product: 1e-40, subnormal
    assert float(tiny[0] * tiny[1]) != 0.0
    with cpu_settings(before + 1):
        assert float(tiny[0] * tiny[1]) == 0.0
        assert torch.get_num_threads() == before + 1
    assert float(tiny[0] * tiny[1]) != 0.0
    assert torch.get_num_threads() == before


class _Recorder(BaseEstimator):
    """An estimator whose fit records the counts it runs with."""

    _parameter_constraints: dict = {"n_threads": "no_validation"}

    def __init__(self, n_threads=None):
        self.n_threads = n_threads

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        self.counts_ = counts()
        return self


class _RecordingNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)
        self.seen = []

    def forward(self, x):
        self.seen.append(counts())
        return self.linear(x)


@needs_blas
def test_the_package_fits_and_transforms_run_in_the_budget(caller_counts):
    X = np.random.default_rng(0).normal(size=(4, 3))
    assert _Recorder(n_threads=2).fit(X).counts_ == all_at(2)
    assert _Recorder().fit(X).counts_ == all_at(5)  # no n_threads: torch's count
    assert counts() == caller_counts
    net = _RecordingNet()
    lft = LayerFeatureTransformer(net, layers="linear", cache=None, n_threads=2).fit(X)
    lft.transform(X)
    assert net.seen and all(seen == all_at(2) for seen in net.seen)
    assert counts() == caller_counts


def test_the_loaded_libraries_are_found_again_after_an_import(monkeypatch):
    import sys
    import types

    from sklearn_layers.utils import _threads

    first = _threads._controller()
    assert _threads._controller() is first  # nothing imported: the same list
    monkeypatch.setitem(sys.modules, "a_module_loading_a_blas", types.ModuleType("m"))
    again = _threads._controller()
    assert again is not first
    assert {lib.filepath for lib in again.lib_controllers} == {
        lib.filepath for lib in first.lib_controllers
    }


@needs_blas
def test_concurrent_probe_fits_leave_the_callers_blas_count():
    from sklearn_layers import LinearProbeClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 8))
    y = (X[:, 0] > 0).astype(int)

    def fits():
        for _ in range(10):
            LinearProbeClassifier(n_threads=1).fit(X, y)

    with threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        threads = [threading.Thread(target=fits) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert counts() == before
