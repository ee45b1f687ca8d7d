"""Torch's intra-op thread count (and denormal flushing), changed for one call only.

How torch keeps the count depends on its parallel backend. With OpenMP (the
Linux and Windows wheels) ``torch.set_num_threads(n)`` sets the count of the
calling thread, and also the count that threads which have not run a torch
operation yet will start with. With the native thread pool there is one count
for the whole process.
"""

import contextlib
import functools
import threading
import warnings

import torch

_LOCK = threading.Lock()
# process-wide backends only: the calls inside torch_threads right now
_SHARED = {"users": 0, "count": None, "saved": None}


@functools.cache
def _backend():
    for line in torch.__config__.parallel_info().splitlines():
        if "parallel backend" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def _counts_are_per_thread():
    return _backend() == "OpenMP"


def _set_for_this_thread(n_threads):
    """``torch.set_num_threads`` for the calling thread only (call with _LOCK held).

    torch also makes the count the one that new threads start with; a helper
    thread, which starts with the count from before, sets that back.
    """
    start = []
    ready, done = threading.Event(), threading.Event()

    def restore_start_count():
        start.append(torch.get_num_threads())
        ready.set()
        done.wait()
        torch.set_num_threads(start[0])

    helper = threading.Thread(target=restore_start_count, daemon=True)
    helper.start()
    ready.wait()
    try:
        torch.set_num_threads(n_threads)
    finally:
        done.set()
        helper.join()


@contextlib.contextmanager
def _per_thread(n_threads):
    previous = torch.get_num_threads()
    if previous == n_threads:
        yield
        return
    with _LOCK:
        _set_for_this_thread(n_threads)
    try:
        yield
    finally:
        with _LOCK:
            _set_for_this_thread(previous)


@contextlib.contextmanager
def _process_wide(n_threads):
    with _LOCK:
        if _SHARED["users"] == 0:
            _SHARED["saved"] = torch.get_num_threads()
            _SHARED["count"] = n_threads
            if _SHARED["saved"] != n_threads:
                torch.set_num_threads(n_threads)
        elif _SHARED["count"] != n_threads:
            warnings.warn(
                f"n_threads={n_threads} is not applied: with torch's "
                f"{_backend()} parallel backend the intra-op thread count is one "
                "count for the whole process, and another call running now set it "
                f"to {_SHARED['count']}; this call runs with {_SHARED['count']} "
                "threads until that one returns (results do not depend on it). "
                "Give calls that run at the same time the same n_threads.",
                RuntimeWarning,
                stacklevel=4,
            )
        _SHARED["users"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _SHARED["users"] -= 1
            if _SHARED["users"] == 0 and torch.get_num_threads() != _SHARED["saved"]:
                torch.set_num_threads(_SHARED["saved"])


@contextlib.contextmanager
def torch_threads(n_threads):
    """Run the body with ``n_threads`` torch intra-op threads, then restore.

    ``None`` changes nothing. With torch's OpenMP backend (the Linux and
    Windows wheels) the count is per thread: the calling thread runs the body
    with ``n_threads`` and gets its own count back on exit; calls in other
    threads, running at the same time with other counts, each get theirs, and
    threads that start meanwhile start with the process's count, not this
    call's (except a thread whose first torch operation falls in the few
    microseconds in which a call switches counts: it may start with that
    call's count). With a backend that has one count per process, the first of
    concurrent calls sets it and the last restores it; a concurrent call asking
    for another count runs with the current one and gets a ``RuntimeWarning``
    (waiting for the count instead could deadlock a call that waits on
    another, as nested parallel code does).

    Parameters
    ----------
    n_threads : int or None
        Threads for torch's intra-op parallelism.
    """
    if n_threads is None:
        yield
    elif _counts_are_per_thread():
        with _per_thread(n_threads):
            yield
    else:
        with _process_wide(n_threads):
            yield


def _flush_denormal_on():
    """Whether this thread flushes denormals to zero (torch has no getter)."""
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10])) == 0.0


@contextlib.contextmanager
def cpu_settings(n_threads):
    """Torch thread count and flush-to-zero of denormals, for one call only.

    Both are restored on exit (flush-to-zero is state of the calling thread).
    Flushing denormals matters for training: as an ensemble grows, confident
    logits make ``sigmoid``/``softmax`` gradients subnormal, and subnormal
    operands make CPU arithmetic many times slower, with no effect on the
    results.

    Parameters
    ----------
    n_threads : int or None
        Threads for torch's intra-op parallelism, as in :func:`torch_threads`.
    """
    previous_flush = _flush_denormal_on()
    with torch_threads(n_threads):
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(previous_flush)
