"""One thread budget for torch, BLAS and OpenMP, for one call only.

:func:`thread_budget` runs a fit or a transform with ``n`` threads in each
pool the call may use, and gives the caller back its own counts on exit:

- torch's intra-op count (``torch.set_num_threads``). On torch's OpenMP
  backend (the Linux and Windows wheels) that count belongs to the calling
  thread; torch also makes it the count of threads that run their first torch
  operation while the call lasts (a pool started inside the call starts with
  the budget, and keeps it).
- the OpenMP runtimes loaded in the process (torch's and scikit-learn's
  ``libgomp``), through :mod:`threadpoolctl`: OpenMP keeps the count per
  calling thread.
- the BLAS libraries (OpenBLAS, MKL, BLIS under numpy and scipy), through
  :mod:`threadpoolctl`. OpenBLAS keeps one count for the whole process, so
  only one thread at a time may change it: the first call to enter sets it and
  restores it on exit, and a call entering from another thread meanwhile
  leaves it alone (it runs with the BLAS count the first call set, then with
  the caller's once that call returns; results do not depend on it). No count
  of calls is kept anywhere: the lock below is the only process-wide object,
  and it guards the one process-wide setting.

Nothing here reads text (torch's ``parallel_info()``): threadpoolctl finds the
libraries by the symbols they export. Finding them walks every shared library
the process has loaded (about 10 ms with torch and transformers loaded, many
times a grid search's per-call work), so the list is kept for the process and
read again whenever ``sys.modules`` has grown: Python loads a new BLAS or
OpenMP runtime through an import. What is kept is a fact about the process,
not about any user object; the counts themselves are read at every call.
"""

import contextlib
import sys
import threading
from numbers import Integral

import torch
from threadpoolctl import ThreadpoolController

# Held by the call that changed the process-wide BLAS count, for the duration
# of that call (re-entrant: a nested call in the same thread may narrow it).
_BLAS_COUNT = threading.RLock()
# The thread pools of the libraries loaded in this process, and how many
# modules were imported when they were found.
_LOADED = {"modules": -1, "controller": None}


def _controller():
    n_modules = len(sys.modules)
    if _LOADED["modules"] != n_modules:
        _LOADED["controller"] = ThreadpoolController()
        _LOADED["modules"] = n_modules
    return _LOADED["controller"]


def is_thread_count(value):
    """Whether ``value`` is a valid ``n_threads`` other than ``None``."""
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def budget(n_threads):
    """The thread count ``n_threads`` stands for: ``None`` is the calling
    thread's torch intra-op count (``torch.get_num_threads()``)."""
    return torch.get_num_threads() if n_threads is None else int(n_threads)


@contextlib.contextmanager
def _torch_count(n):
    previous = torch.get_num_threads()
    if previous == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def thread_budget(n_threads):
    """Run the body with ``n`` threads in torch, BLAS and OpenMP, then restore.

    Parameters
    ----------
    n_threads : int or None
        The budget; ``None`` takes the calling thread's torch intra-op count
        (``torch.get_num_threads()``), so that a ``torch.set_num_threads(1)``
        before a grid search governs the heads' BLAS and OpenMP pools too.
    """
    n = budget(n_threads)
    controller = _controller()
    owner = _BLAS_COUNT.acquire(blocking=False)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_torch_count(n))
            stack.enter_context(controller.limit(limits=n, user_api="openmp"))
            if owner:
                stack.enter_context(controller.limit(limits=n, user_api="blas"))
            yield
    finally:
        if owner:
            _BLAS_COUNT.release()


# The name the package's estimators import: the budget covers more than torch.
torch_threads = thread_budget


def _flush_denormal_on():
    """Whether this thread flushes denormals to zero (torch has no getter)."""
    return float(torch.tensor([1e-30]) * torch.tensor([1e-10])) == 0.0


@contextlib.contextmanager
def cpu_settings(n_threads):
    """The thread budget and flush-to-zero of denormals, for one call only.

    Both are restored on exit (flush-to-zero is state of the calling thread).
    Flushing denormals matters for training: as an ensemble grows, confident
    logits make ``sigmoid``/``softmax`` gradients subnormal, and subnormal
    operands make CPU arithmetic many times slower, with no effect on the
    results.

    Parameters
    ----------
    n_threads : int or None
        The budget, as in :func:`thread_budget`.
    """
    previous_flush = _flush_denormal_on()
    with thread_budget(n_threads):
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(previous_flush)
