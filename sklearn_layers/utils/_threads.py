"""Torch's thread count, changed for the duration of a call only."""

import threading
from contextlib import contextmanager

import torch

_LOCK = threading.Lock()
_STATE = {"users": 0, "saved": None}


@contextmanager
def torch_threads(n_threads):
    """Run the body with ``torch.set_num_threads(n_threads)``, then restore it.

    The setting is process-wide, so concurrent users are reference counted: the
    first one to enter sets the count, the last one to leave restores the
    count found before the first entered (a later concurrent user asking a
    different count runs under the first one's). ``None`` changes nothing.

    Parameters
    ----------
    n_threads : int or None
        Threads for torch's intra-op parallelism.
    """
    if n_threads is None:
        yield
        return
    with _LOCK:
        if _STATE["users"] == 0:
            _STATE["saved"] = torch.get_num_threads()
            if _STATE["saved"] != n_threads:
                torch.set_num_threads(n_threads)
        _STATE["users"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["users"] -= 1
            if _STATE["users"] == 0 and torch.get_num_threads() != _STATE["saved"]:
                torch.set_num_threads(_STATE["saved"])
