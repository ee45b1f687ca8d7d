"""Run a frozen model and capture pooled outputs of chosen modules.

Hooks live only inside :func:`capture`, which removes them on exit, however it
exits. They are filtered by thread: a hook registered by one thread does
nothing when another thread runs the same model, so two threads can extract
different layers of one shared network at once. Once every requested module
has fired, the forward pass is stopped (early exit) by an exception derived
from ``BaseException``, so a model's own ``except Exception`` cannot swallow it.

An ``nn.TransformerEncoderLayer`` is observed through a tap (:mod:`._tap`)
instead of a hook, because a hook on it switches off PyTorch's fused encoder
kernel.
"""

import threading
from contextlib import contextmanager

import torch

from ._layers import OUTPUT, captures_input, module_of
from ._tap import is_fused_layer, tap
from ._pooling import pool


class _StopForward(BaseException):
    """Raised by the last hook to stop the forward pass early."""


_MODE_LOCK = threading.Lock()
_MODE_USERS = {}  # id(model) -> [number of active users, saved training flags]
_HOOK_LOCKS = {}


@contextmanager
def eval_mode(model):
    """Put every submodule in eval mode for the duration, then restore each flag.

    Reference counted per model so that overlapping calls from several threads
    restore the user's flags only when the last one leaves.
    """
    key = id(model)
    with _MODE_LOCK:
        entry = _MODE_USERS.get(key)
        if entry is None:
            flags = [(m, m.training) for m in model.modules()]
            _MODE_USERS[key] = [1, flags]
            for m, _ in flags:
                m.training = False
        else:
            entry[0] += 1
    try:
        yield
    finally:
        with _MODE_LOCK:
            entry = _MODE_USERS[key]
            entry[0] -= 1
            if entry[0] == 0:
                del _MODE_USERS[key]
                for m, flag in entry[1]:
                    m.training = flag


def _hook_lock(model):
    with _MODE_LOCK:
        return _HOOK_LOCKS.setdefault(id(model), threading.Lock())


def first_tensor(value):
    """The first tensor in a module output (tensor, tuple, dict or ModelOutput)."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, dict):  # includes transformers' ModelOutput
        values = value.values()
    elif isinstance(value, (tuple, list)):
        values = value
    else:
        values = ()
    for item in values:
        found = first_tensor(item)
        if found is not None:
            return found
    return None


class _Recorder:
    """Per-call state shared by the hooks of one :func:`capture`."""

    def __init__(self, names, poolings, early_exit, optional=()):
        self.names = names
        self.optional = set(optional)
        self.poolings = poolings
        self.early_exit = early_exit and OUTPUT not in names
        self.owner = threading.get_ident()
        self.results = {}
        self.mask = None

    def record(self, name, value):
        if threading.get_ident() != self.owner or name in self.results:
            return
        if name in self.optional:
            # a prefetched layer is a bonus for the cache: if it cannot be pooled
            # it is skipped, never an error for the layers the user asked for
            try:
                self._store(name, value)
            except (TypeError, ValueError, RuntimeError):
                pass
        else:
            self._store(name, value)
        if self.early_exit and len(self.results) == len(self.names):
            raise _StopForward

    def _store(self, name, value):
        tensor = first_tensor(value)
        if tensor is None:
            raise TypeError(
                f"Layer {name!r} produced {type(value).__name__}, which holds no tensor."
            )
        self.results[name] = (
            pool(tensor, self.poolings[name], self.mask).to(torch.float32).cpu()
        )


def _reporter(recorder, name):
    return lambda value: recorder.record(name, value)


def _integer_inputs(batch):
    tensors = [*batch.args, *batch.kwargs.values()]
    return [
        str(t.dtype)
        for t in tensors
        if isinstance(t, torch.Tensor) and not t.is_floating_point()
    ]


def _annotate(exc):
    if hasattr(exc, "add_note"):
        exc.add_note(
            "(raised by the model's forward pass during feature extraction; "
            "the model was restored and no hook was left on it)"
        )


@contextmanager
def capture(model, names, poolings, *, early_exit=True, optional=()):
    """Register hooks on ``names`` and yield a function running one batch.

    Parameters
    ----------
    model : torch.nn.Module
        The network; it is left exactly as found.
    names : list of str
        Resolved layer names (see :func:`~._layers.resolve_layers`).
    poolings : dict
        Layer name -> pooling.
    early_exit : bool, default=True
        Stop the forward pass once every requested module has fired.
    optional : collection of str, default=()
        Names whose capture may fail or not happen (prefetched blocks): they are
        then missing from the results instead of raising.

    Yields
    ------
    run : callable
        ``run(batch) -> dict name -> torch.Tensor (batch, n_features)``.
    """
    recorder = _Recorder(list(names), poolings, early_exit, optional)
    handles = []

    def output_hook(name):
        return lambda module, args, output: recorder.record(name, output)

    def input_hook(name):
        return lambda module, args: recorder.record(name, args)

    lock = _hook_lock(model)
    try:
        with lock:
            for name in names:
                module = module_of(model, name)
                kind = "input" if captures_input(name) else "output"
                if name != OUTPUT and is_fused_layer(module):
                    handles.append(tap(module, kind, _reporter(recorder, name)))
                elif kind == "input":
                    handles.append(module.register_forward_pre_hook(input_hook(name)))
                else:
                    handles.append(module.register_forward_hook(output_hook(name)))

        def run(batch):
            recorder.results = {}
            recorder.mask = batch.mask
            try:
                model(*batch.args, **batch.kwargs)
            except _StopForward:
                pass
            except RuntimeError as exc:
                integers = _integer_inputs(batch)
                if integers and any(w in str(exc) for w in ("dtype", "type", "Long", "Int")):
                    raise ValueError(
                        f"The model rejected integer input ({', '.join(integers)}): "
                        "integer tensors are passed to the model unchanged, as token "
                        "ids are. Pass a float tensor or a numpy array (which is cast "
                        f"to the model's dtype) if the model expects floats. The model "
                        f"said: {exc}"
                    ) from exc
                _annotate(exc)
                raise
            except Exception as exc:
                _annotate(exc)
                raise
            missing = [
                n for n in recorder.names
                if n not in recorder.results and n not in recorder.optional
            ]
            if missing:
                raise ValueError(
                    f"Layers {missing} did not run during the model's forward pass, "
                    "so they have no output to extract."
                )
            return recorder.results

        with eval_mode(model), torch.inference_mode():
            yield run
    finally:
        with lock:
            for handle in handles:
                handle.remove()
