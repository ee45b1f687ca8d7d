"""torch_threads and cpu_settings: a count for one call, in the calling thread."""

import threading
import warnings

import pytest
import torch

from sklearn_layers.utils import _threads
from sklearn_layers.utils._threads import cpu_settings, torch_threads


def start_count():
    """The count a thread that never ran torch code starts with."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def run_in_threads(targets):
    errors = []

    def guarded(target):
        try:
            target()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(t,)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    if errors:
        raise errors[0]


def test_none_changes_nothing():
    before = torch.get_num_threads()
    with torch_threads(None):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_sets_and_restores_in_the_calling_thread():
    before, starts = torch.get_num_threads(), start_count()
    with torch_threads(before + 2):
        assert torch.get_num_threads() == before + 2
        with torch_threads(before + 1):
            assert torch.get_num_threads() == before + 1
        assert torch.get_num_threads() == before + 2
    assert torch.get_num_threads() == before
    with pytest.raises(KeyError), torch_threads(before + 3):
        raise KeyError("the body fails")
    assert torch.get_num_threads() == before
    assert start_count() == starts


@pytest.mark.skipif(
    not _threads._counts_are_per_thread(), reason="torch keeps one count per process"
)
def test_concurrent_calls_each_run_with_their_own_count():
    starts = start_count()
    wanted = [1, 2, 3, 3, 4]
    inside, after, before = {}, {}, {}
    barrier = threading.Barrier(len(wanted))

    def call(i):
        before[i] = torch.get_num_threads()
        # every thread has run torch code before any call switches counts (a
        # thread starting in the microseconds of a switch may take that count)
        barrier.wait()
        with torch_threads(wanted[i]):
            barrier.wait()  # every call is inside at once
            inside[i] = torch.get_num_threads()
            barrier.wait()
        after[i] = torch.get_num_threads()

    run_in_threads([lambda i=i: call(i) for i in range(len(wanted))])
    assert [inside[i] for i in range(len(wanted))] == wanted
    assert after == before == {i: starts for i in range(len(wanted))}
    assert start_count() == starts


@pytest.mark.skipif(
    not _threads._counts_are_per_thread(), reason="torch keeps one count per process"
)
def test_threads_started_during_a_call_start_with_the_process_count():
    starts = start_count()
    with torch_threads(starts + 2):
        assert start_count() == starts
        assert torch.get_num_threads() == starts + 2
    assert start_count() == starts


def test_process_wide_backend_warns_about_a_count_it_cannot_apply(monkeypatch):
    monkeypatch.setattr(_threads, "_counts_are_per_thread", lambda: False)
    before = torch.get_num_threads()
    entered, release = threading.Event(), threading.Event()

    def holder():
        with torch_threads(before + 1):
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert entered.wait(30)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with torch_threads(before + 1):  # the same count: nothing to say
                pass
        with pytest.warns(RuntimeWarning, match=rf"n_threads={before + 2} is not"):
            with torch_threads(before + 2):
                pass
    finally:
        release.set()
        thread.join(30)
    assert _threads._SHARED["users"] == 0
    assert torch.get_num_threads() == before


def test_cpu_settings_flushes_denormals_for_the_call_only():
    before = torch.get_num_threads()
    tiny = torch.tensor([1e-30]), torch.tensor([1e-10])  # product: 1e-40, subnormal
    assert float(tiny[0] * tiny[1]) != 0.0
    with cpu_settings(before + 1):
        assert float(tiny[0] * tiny[1]) == 0.0
        assert torch.get_num_threads() == before + 1
    assert float(tiny[0] * tiny[1]) != 0.0
    assert torch.get_num_threads() == before
