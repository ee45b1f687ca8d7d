"""Shapes of activations, where a decision needs them and names cannot tell.

What ``"penultimate"`` means for a model whose last module reduces a token
sequence (a BERT pooler, a classification head on the first token) is read
from one row sent through a token model at ``fit``, with a pre-hook and a hook
on each module; nothing is kept afterwards. Whether a chosen ``"mean"`` or
``"max"`` had anything to reduce is read from the activations of each call
(:func:`warn_if_nothing_to_pool`), at no extra cost.
"""

import threading
import warnings

import torch

from ._tap import is_fused_layer


class _Call:
    __slots__ = ("path", "module", "input", "output")

    def __init__(self, path, module, first_input):
        self.path = path
        self.module = module
        self.input = first_input
        self.output = None  # set when the call returns


def _shape(value):
    from ._capture import first_tensor

    tensor = first_tensor(value)
    return None if tensor is None else tuple(tensor.shape)


class ModuleShapes:
    """The modules of one forward pass of one row, in call order, with their shapes.

    Built lazily: nothing runs until a shape is asked for, and a forward that
    fails leaves no shapes (the extraction that follows reports the error).

    Parameters
    ----------
    model : torch.nn.Module
        The eager model.
    adapter : input adapter
        From :func:`~._inputs.make_input`; its first row is used.
    device : torch.device
        Where the model's weights are.

    Attributes
    ----------
    n_rows_run : int
        Rows sent through the network to trace (0 or 1).
    """

    def __init__(self, model, adapter, device):
        self.model = model
        self.adapter = adapter
        self.device = device
        self._calls = None
        self.n_rows_run = 0

    def may_reduce_tokens(self):
        """Whether the model embeds tokens (an ``nn.Embedding``): only such a model's
        last module can reduce a token sequence, so only then is a row traced."""
        return any(isinstance(m, torch.nn.Embedding) for m in self.model.modules())

    @property
    def calls(self):
        """List of calls (``path``, ``module``, ``input`` and ``output`` shapes), or None."""
        if self._calls is None:
            self._calls = self._trace() or []
        return self._calls or None

    def _trace(self):
        from ._capture import eval_mode
        from ._extract import model_float_dtype
        from ._layers import is_traced

        if is_traced(self.model):
            return None
        batch = next(iter(self.adapter.chunks(1))).build([0])
        batch = batch.to(self.device, model_float_dtype(self.model))
        calls, stack, owner = [], [], threading.get_ident()

        def enter(path):
            def hook(module, args):
                if threading.get_ident() == owner:
                    call = _Call(path, module, _shape(args[0]) if args else None)
                    calls.append(call)
                    stack.append(call)
            return hook

        def leave(module, args, output):
            if threading.get_ident() == owner and stack:
                stack.pop().output = _shape(output)

        handles, skip = [], set()
        try:
            for path, module in self.model.named_modules():
                if is_fused_layer(module) or isinstance(module, torch.jit.ScriptModule):
                    skip.update(id(m) for m in module.modules())
                if id(module) in skip:
                    continue
                handles.append(module.register_forward_pre_hook(enter(path)))
                handles.append(module.register_forward_hook(leave))
            with eval_mode(self.model), torch.no_grad():
                self.n_rows_run = 1
                self.model(*batch.args, **batch.kwargs)
        except Exception:  # the extraction that follows says what is wrong
            return None
        finally:
            for handle in handles:
                handle.remove()
        return calls


def sequence_reducer(shapes, last_linear):
    """The module that reduces a token sequence just before ``last_linear``, or None.

    Walking back from the last ``nn.Linear``'s call, the first module that
    received a 3-D input is the reducer when it turned a ``(N, T, D)`` sequence
    into one ``D``-vector per sample feeding the linear layer: it contains the
    linear layer (a classification head on the first token) or returned
    ``(N, D)`` (a pooler). Its input is then the last hidden state.

    Parameters
    ----------
    shapes : ModuleShapes
        One row's calls.
    last_linear : str
        The path of the model's last ``nn.Linear``.

    Returns
    -------
    path : str or None
    """
    if not shapes.may_reduce_tokens():
        return None
    calls = shapes.calls
    if calls is None:
        return None
    index = next((i for i, c in enumerate(calls) if c.path == last_linear), None)
    if index is None or calls[index].input is None or len(calls[index].input) != 2:
        return None
    width = calls[index].input[-1]
    for call in reversed(calls[:index]):
        if call.input is None or len(call.input) < 3:
            continue
        if len(call.input) != 3 or call.input[-1] != width or not call.path:
            return None
        contains = last_linear.startswith(call.path + ".")
        reduced = call.output is not None and call.output == (call.input[0], width)
        return call.path if contains or reduced else None
    return None


_REDUCING = ("mean", "max")


def warn_if_nothing_to_pool(shapes, poolings):
    """Warn when the ``"mean"`` or ``"max"`` chosen for a call had nothing to reduce.

    A 2-D activation is already one vector per sample: ``"mean"`` and
    ``"max"`` leave it as it is, which is not what a user who chose them
    meant (a pooler's output is not a mean over the tokens). The warning
    comes when every layer of the call is such a vector: one pooling over
    many layers, some of which have a token or spatial axis (``layers="all"``
    reaching the logits), reduces those and passes the vectors through
    without a word. ``"auto"`` never warns; ``"cls"`` and ``"last"`` on a
    vector are errors.

    Parameters
    ----------
    shapes : dict
        Requested layer name -> the shape of its activation (one batch).
    poolings : dict
        Layer name -> pooling.
    """
    if not shapes or any(len(shape) > 2 for shape in shapes.values()):
        return
    for name, shape in shapes.items():
        # one message per layer, pooling and width (not per batch size): shown once
        pooling = poolings[name]
        if isinstance(pooling, str) and pooling in _REDUCING:
            warnings.warn(
                f"pooling={pooling!r} cannot apply to layer {name!r}: its activation "
                f"of shape (batch, {', '.join(map(str, shape[1:]))}) is already "
                "one vector per sample, so it is used as it is. Extract a layer with a "
                "token or spatial axis to pool (for a text encoder, a hidden state), or "
                "choose pooling='auto' to silence this warning.",
                UserWarning,
                stacklevel=2,
            )
