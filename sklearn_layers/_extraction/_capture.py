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

import threading
import weakref
from contextlib import contextmanager

import torch

from ._layers import OUTPUT, captures_input, module_of
from ._pooling import pool
from ._shapes import warn_if_nothing_to_pool
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

    def __init__(self, names, poolings, early_exit, optional=(), until=None):
        self.names = names
        self.until = until
        self.stopped = False
        self.optional = set(optional)
        self.poolings = poolings
        self.early_exit = early_exit and OUTPUT not in names
        self.owner = threading.get_ident()
        self.results = {}
        self.shapes = {}
        self.fired = set()
        self.mask = None
        self.n_rows = 0

    def start(self, batch):
        self.results = {}
        self.fired = set()
        self.stopped = False
        self.mask = batch.mask
        self.n_rows = batch.n
        self.shapes = {}  # requested layer -> activation shape, for the pooling check

    def record(self, name, value):
        # a module called twice is captured at its first call only, even when
        # that call gives nothing to keep: every extraction, with or without a
        # cache, agrees on which output a name is
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
            self.shapes[name] = tuple(activation.shape)
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
            if self.until is not None and self.until(name, features):
                self.stopped = True
                raise _StopForward
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


def _shapes(tensors):
    parts = [f"{tuple(t.shape)} {t.dtype}" for t in tensors.args
             if isinstance(t, torch.Tensor)]
    parts += [
        f"{k}: {tuple(t.shape)} {t.dtype}"
        for k, t in tensors.kwargs.items()
        if isinstance(t, torch.Tensor)
    ]
    return ", ".join(parts) or "no tensors"


def _weights_dtype(module):
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.is_floating_point():
        return weight.dtype
    return None


def _input_mistake(module, x):
    """What a module with fixed input needs that the user's input ``x`` lacks, or None.

    Read from the input and the module's own configuration before it runs,
    for the modules that take the input first in ordinary networks: a
    floating-point layer given integers, a linear layer given another width,
    a convolution given another number of channels.
    """
    if not isinstance(module, (torch.nn.Linear, torch.nn.modules.conv._ConvNd)) or (
        isinstance(module, torch.nn.modules.lazy.LazyModuleMixin)  # shaped by its input
    ):
        return None
    if _weights_dtype(module) is not None and not (x.is_floating_point() or x.is_complex()):
        return (
            f"it has floating-point weights but received integer input ({x.dtype}). "
            "Integer tensors are passed to the model unchanged, as token ids are; pass "
            "a float tensor or a numpy array (which is cast to the model's dtype) if "
            "the model expects floats"
        )
    if isinstance(module, torch.nn.Linear):
        if x.ndim and x.shape[-1] != module.in_features:
            return (
                f"it takes {module.in_features} features on the last axis but received "
                f"shape {tuple(x.shape)}. Check that X has the shape the model expects"
            )
        return None
    channel_axis = -(len(module.kernel_size) + 1)
    if x.ndim < -channel_axis or x.shape[channel_axis] != module.in_channels:
        return (
            f"it takes {module.in_channels} input channels (axis {x.ndim + channel_axis} "
            f"of a {-channel_axis + 1}-D batch) but received shape {tuple(x.shape)}. "
            "Check that X has the shape the model expects"
        )
    return None


class _RunningModules:
    """Which module of the model is running, kept by a pre-hook and a hook on each.

    When the forward pass raises, the innermost module still on the stack is
    the one whose code was running: the exception the model raised is
    annotated with it (``add_note``), never replaced. The same pre-hook checks
    what a module receives when that is the user's input itself (see
    :func:`_input_mistake`), so a known mistake is a ``ValueError`` before any
    of the model's code fails on it.
    """

    _sklearn_layers_internal = True  # not part of the model's identity

    def __init__(self, model, owner):
        self.model = model
        self.owner = owner
        self.stack = []
        self.inputs = ()
        self.batch = None
        self.refused = None

    def attach(self, model):
        from ._layers import is_traced

        handles = []
        skip = set()
        modules = [("", model)] if is_traced(model) else model.named_modules()
        for path, module in modules:
            if is_fused_layer(module) or isinstance(module, torch.jit.ScriptModule):
                # a hook anywhere inside a fused layer switches off its kernel; a
                # TorchScript submodule takes none
                skip.update(id(m) for m in module.modules())
            if id(module) in skip:
                continue
            handles.append(module.register_forward_pre_hook(
                _Enter(self, path or "<the model itself>")))
            handles.append(module.register_forward_hook(_Leave(self)))
        return handles

    def start(self, batch):
        self.stack = []
        self.batch = batch
        self.inputs = tuple(
            id(t) for t in (*batch.args, *batch.kwargs.values()) if isinstance(t, torch.Tensor)
        )

    def enter(self, path, module, args):
        if threading.get_ident() != self.owner:
            return
        self.stack.append((path, module))
        if args and isinstance(args[0], torch.Tensor) and id(args[0]) in self.inputs:
            mistake = _input_mistake(module, args[0])
            if mistake is not None:
                self.refused = ValueError(
                    f"{type(self.model).__name__} cannot run on the input "
                    f"({_shapes(self.batch)}): module {path!r} "
                    f"({type(module).__name__}) receives it first, and {mistake}."
                )
                raise self.refused

    def leave(self):
        if threading.get_ident() == self.owner and self.stack:
            self.stack.pop()

    def annotate(self, exc):
        if exc is self.refused:  # our own check, which says it all
            return
        where = "its forward pass"
        if self.stack:
            path, module = self.stack[-1]
            where = f"module {path!r} ({type(module).__name__})"
        exc.add_note(
            f"sklearn_layers: raised by {type(self.model).__name__} while running "
            f"{where} on the input ({_shapes(self.batch)}) during feature extraction; "
            "the model was restored and no hook was left on it."
        )


class _Enter:
    _sklearn_layers_internal = True

    def __init__(self, running, path):
        self.running = running
        self.path = path

    def __call__(self, module, args):
        self.running.enter(self.path, module, args)


class _Leave:
    _sklearn_layers_internal = True

    def __init__(self, running):
        self.running = running

    def __call__(self, module, args, output):
        self.running.leave()


@contextmanager
def capture(model, names, poolings, *, early_exit=True, optional=(), until=None):
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
    until : callable, default=None
        ``until(name, features) -> bool``, called as each requested layer is
        captured (in the order the forward reaches them); True stops the
        forward there, and the layers not reached yet are simply missing from
        the results (early-exit prediction decides per batch how deep to go).

    Yields
    ------
    run : callable
        ``run(batch) -> dict name -> torch.Tensor (batch, n_features)``: float32
        CPU tensors owning their memory.
    """
    recorder = _Recorder(list(names), poolings, early_exit, optional, until)
    running = _RunningModules(model, recorder.owner)
    handles = []
    try:
        with _HOOK_LOCK:
            handles.extend(running.attach(model))
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

        def run(batch):
            recorder.start(batch)
            running.start(batch)
            try:
                model(*batch.args, **batch.kwargs)
            except _StopForward:
                pass
            except Exception as exc:
                running.annotate(exc)
                raise
            missing = [] if recorder.stopped else [
                n for n in recorder.names
                if n not in recorder.results and n not in recorder.optional
            ]
            if missing:
                raise ValueError(
                    f"Layers {missing} did not run during the model's forward pass, "
                    "so they have no output to extract."
                )
            warn_if_nothing_to_pool(recorder.shapes, recorder.poolings)
            return recorder.results

        with eval_mode(model), torch.no_grad():
            yield run
    finally:
        with _HOOK_LOCK:
            for handle in handles:
                handle.remove()
