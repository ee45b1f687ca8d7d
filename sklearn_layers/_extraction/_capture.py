"""Run a frozen model and capture pooled outputs of chosen modules.

Hooks live only inside :func:`capture`, which removes them on exit, however it
exits. They are filtered by thread: a hook registered by one thread does
nothing when another thread runs the same model, so two threads can extract
different layers of one shared network at once. Once every requested module
has fired, the forward pass is stopped (early exit) by an exception derived
from ``BaseException``, so a model's own ``except Exception`` cannot swallow it.

What leaves a hook owns its memory: a pooled activation that still shares
storage with the live activation (a 2-D pass-through, ``"flatten"``,
``"cls"``, a callable) is copied, so a later in-place operation of the
forward (``ReLU(inplace=True)``, a residual ``+=``) cannot reach it.

An ``nn.TransformerEncoderLayer`` is observed through a tap (:mod:`._tap`)
instead of a hook, because a hook on it switches off PyTorch's fused encoder
kernel.
"""

import dis
import threading
import weakref
from contextlib import contextmanager

import torch

from ._layers import OUTPUT, captures_input, module_of
from ._pooling import pool
from ._tap import is_fused_layer, tap


class _StopForward(BaseException):
    """Raised by the last hook to stop the forward pass early."""


_MODE_LOCK = threading.Lock()
# module -> [number of active extractions using it, the user's training flag]
_MODE_USERS = weakref.WeakKeyDictionary()
_HOOK_LOCK = threading.Lock()


@contextmanager
def eval_mode(model):
    """Put every submodule in eval mode for the duration, then restore each flag.

    Counted per submodule, not per model: two models sharing a submodule and
    extracted at once in two threads keep it in eval mode until both are done,
    and each flag is restored to what the user had set when the last user
    leaves.
    """
    modules = list(model.modules())
    with _MODE_LOCK:
        for m in modules:
            entry = _MODE_USERS.get(m)
            if entry is None:
                _MODE_USERS[m] = [1, m.training]
                m.training = False
            else:
                entry[0] += 1
    try:
        yield
    finally:
        with _MODE_LOCK:
            for m in modules:
                entry = _MODE_USERS[m]
                entry[0] -= 1
                if entry[0] == 0:
                    del _MODE_USERS[m]
                    m.training = entry[1]


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


def owned_features(activation, pooling, mask=None):
    """Pool ``activation`` into a float32 CPU tensor that shares no memory with it."""
    out = pool(activation, pooling, mask)
    converted = out.to(device="cpu", dtype=torch.float32)
    shares = (
        callable(pooling)
        or converted.untyped_storage().data_ptr()
        == activation.untyped_storage().data_ptr()
    )
    return converted.clone() if shares else converted


class _Recorder:
    """Per-call state shared by the hooks of one :func:`capture`."""

    def __init__(self, names, poolings, early_exit, optional=()):
        self.names = names
        self.optional = set(optional)
        self.poolings = poolings
        self.early_exit = early_exit and OUTPUT not in names
        self.owner = threading.get_ident()
        self.results = {}
        self.fired = set()
        self.mask = None
        self.n_rows = 0

    def start(self, batch):
        self.results = {}
        self.fired = set()
        self.mask = batch.mask
        self.n_rows = batch.n

    def record(self, name, value):
        # a module called twice is captured at its first call only, even when
        # that call gives nothing to keep: the alias observer and every
        # extraction, with or without a cache, agree on which output a name is
        if threading.get_ident() != self.owner or name in self.fired:
            return
        self.fired.add(name)
        if name in self.optional:
            # a prefetched layer is a bonus for the cache: if it cannot be pooled
            # or is not one row per sample, it is skipped, never an error for the
            # layers the user asked for
            try:
                features, activation = self._pool(name, value)
            except (TypeError, ValueError, RuntimeError):
                features = activation = None
            if features is not None and self._rows_are_samples(activation, features):
                self.results[name] = features
        else:
            features, activation = self._pool(name, value)
            if features.shape[0] != self.n_rows:
                raise ValueError(
                    f"Layer {name!r} produced an activation of shape "
                    f"{tuple(activation.shape)} for a batch of {self.n_rows} rows, "
                    f"which pools to {tuple(features.shape)}: its first axis is not "
                    "the sample axis (a sequence-first module?). Extract a layer "
                    "whose output is batch-first, or pool with a callable that "
                    "returns one row per sample."
                )
            self.results[name] = features
        if self.early_exit and all(n in self.results for n in self.names):
            raise _StopForward

    def _rows_are_samples(self, activation, features):
        if features.shape[0] != self.n_rows:
            return False
        # a sequence-first (T, N, D) activation with T == N looks batch-first:
        # such a batch is not stored for this layer (it is recomputed if asked)
        return not (activation.ndim == 3 and activation.shape[0] == activation.shape[1])

    def _pool(self, name, value):
        tensor = first_tensor(value)
        if tensor is None:
            raise TypeError(
                f"Layer {name!r} produced {type(value).__name__}, which holds no tensor."
            )
        return owned_features(tensor, self.poolings[name], self.mask), tensor


class _Hook:
    """A forward hook or pre-hook reporting one layer to a recorder."""

    _sklearn_layers_internal = True  # not part of the model's identity

    def __init__(self, recorder, name):
        self.recorder = recorder
        self.name = name

    def __call__(self, module, args, output=None):
        self.recorder.record(self.name, args if output is None else output)

    def report(self, value):
        self.recorder.record(self.name, value)


def eager_module(model):
    """The module whose submodules hooks can observe.

    A ``torch.compile``-d model is unwrapped (its compiled graph would not call
    the hooks, and hooks would force recompilation); the names it lists
    (``"_orig_mod.4"``) and the eager ones (``"4"``) both resolve. A
    ``torch.jit.trace``-d module is kept: it calls forward hooks on itself, so
    its ``"output"`` layer is served, while its submodules run traced code that
    hooks cannot observe (:func:`~._layers.resolve_layers` refuses them). A
    ``torch.jit.script``-ed module takes no hook at all and is refused.
    """
    compiled = getattr(getattr(torch, "_dynamo", None), "eval_frame", None)
    optimized = getattr(compiled, "OptimizedModule", ())
    if optimized and isinstance(model, optimized):
        model = model._orig_mod
    if isinstance(model, torch.jit.ScriptModule) and not isinstance(
        model, torch.jit.TopLevelTracedModule
    ):
        raise TypeError(
            f"The model is a TorchScript module ({type(model).__name__}, from "
            "torch.jit.script): it takes no forward hook, so not even its output can "
            "be captured. Pass the eager nn.Module it was made from (a "
            "torch.jit.trace-d module serves its 'output' layer)."
        )
    return model


def _module_paths(model):
    return {module: path for path, module in model.named_modules()}


_MODULE_MACHINERY = torch.nn.modules.module.__file__


def _failing_module(model, exc):
    """The innermost module of ``model`` whose own code was running when ``exc`` rose.

    Returns ``(path, module, frame)`` or None. Frames of ``nn.Module.__call__``
    are skipped; a method's first argument is its module, whatever its name.
    """
    paths = _module_paths(model)
    found = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename != _MODULE_MACHINERY and code.co_argcount:
            owner = tb.tb_frame.f_locals.get(code.co_varnames[0])
            if isinstance(owner, torch.nn.Module) and owner in paths:
                found = (paths[owner] or "<the model itself>", owner, tb.tb_frame)
        tb = tb.tb_next
    return found


def _first_tensor_argument(frame):
    code = frame.f_code
    for name in code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]:
        value = frame.f_locals.get(name)
        if isinstance(value, torch.Tensor):
            return value
    return None


def _shapes(batch):
    parts = [f"{tuple(t.shape)} {t.dtype}" for t in batch.args if isinstance(t, torch.Tensor)]
    parts += [
        f"{k}: {tuple(t.shape)} {t.dtype}"
        for k, t in batch.kwargs.items()
        if isinstance(t, torch.Tensor)
    ]
    return ", ".join(parts) or "no tensors"


_RAISE = dis.opmap["RAISE_VARARGS"]


def raised_by_model_code(exc):
    """Whether ``exc`` comes from a ``raise`` statement (the model's own error),
    not from a torch operation rejecting its input."""
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_code[tb.tb_lasti] == _RAISE


def explain_failure(model, batch, exc):
    """A ValueError saying which module rejected which input, for ``raise ... from``."""
    where = _failing_module(model, exc)
    intro = f"{type(model).__name__} could not run on the input ({_shapes(batch)})"
    if where is None:
        return ValueError(f"{intro}. The model said: {exc}")
    path, module, frame = where
    received = _first_tensor_argument(frame)
    floating = any(p.is_floating_point() for p in module.parameters(recurse=False))
    if received is not None and floating and not (
        received.is_floating_point() or received.is_complex()
    ):
        return ValueError(
            f"{intro}: module {path!r} ({type(module).__name__}) has floating-point "
            f"weights but received integer input ({received.dtype}). Integer tensors are "
            "passed to the model unchanged, as token ids are; pass a float tensor or "
            "a numpy array (which is cast to the model's dtype) if the model expects "
            f"floats. The model said: {exc}"
        )
    got = "" if received is None else f" on an input of shape {tuple(received.shape)}"
    return ValueError(
        f"{intro}: module {path!r} ({type(module).__name__}) failed{got}. "
        f"Check that X has the shape the model expects. The model said: {exc}"
    )


def _annotate(exc):
    exc.add_note(
        "(raised by the model's forward pass during feature extraction; the model "
        "was restored and no hook was left on it)"
    )


@contextmanager
def capture(model, names, poolings, *, early_exit=True, optional=(), observer=None):
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
    observer : AliasObserver, default=None
        Also watch every module (see :mod:`._aliases`); the forward then runs
        under ``torch.no_grad()``, whose tensors carry the version counters
        the observer reads, instead of ``torch.inference_mode()``.

    Yields
    ------
    run : callable
        ``run(batch) -> dict name -> torch.Tensor (batch, n_features)``: float32
        CPU tensors owning their memory.
    """
    recorder = _Recorder(list(names), poolings, early_exit, optional)
    handles = []
    try:
        with _HOOK_LOCK:
            for name in names:
                module = module_of(model, name)
                hook = _Hook(recorder, name)
                kind = "input" if captures_input(name) else "output"
                if name != OUTPUT and is_fused_layer(module):
                    handles.append(tap(module, kind, hook.report))
                elif kind == "input":
                    handles.append(module.register_forward_pre_hook(hook))
                else:
                    handles.append(module.register_forward_hook(hook))
            if observer is not None:
                handles.extend(observer.attach(model))

        def run(batch):
            recorder.start(batch)
            try:
                model(*batch.args, **batch.kwargs)
            except _StopForward:
                pass
            except RuntimeError as exc:
                if isinstance(exc, (torch.OutOfMemoryError, NotImplementedError)) or (
                    raised_by_model_code(exc)
                ):
                    _annotate(exc)
                    raise
                raise explain_failure(model, batch, exc) from exc
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

        grad_mode = torch.inference_mode() if observer is None else torch.no_grad()
        with eval_mode(model), grad_mode:
            yield run
    finally:
        with _HOOK_LOCK:
            for handle in handles:
                handle.remove()
