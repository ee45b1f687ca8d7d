"""Layer names that denote the very same tensor share one cache entry.

Users name a stage in many ways: ``"layer1"`` (an ``nn.Sequential`` stage) is
the very tensor its last child ``"layer1.1"`` returns; a Hugging Face
``"bert"`` returns the output of ``"bert.encoder.layer.5"``; ``"fc:input"`` is
what ``"flatten"`` returned. An :class:`AliasObserver` finds such names while
one row goes through the network: it watches every module's input and output
and groups the names that receive or return the same tensor *object* at the
same *version* (an in-place operation in between, such as
``ReLU(inplace=True)``, bumps the version, so a convolution and the in-place
activation after it never share). Each group is cached under one canonical
name, so whatever names a grid uses, each row goes through the network once.

The map is observed on the first row a model meets in a process (per model
fingerprint) and memoised. Extractions that capture an alias and its canonical
layer together compare them on every batch; a module that returns the same
object only for some inputs loses its alias.
"""

import threading
import warnings
import weakref

from ._capture import first_tensor
from ._layers import INPUT_SUFFIX, OUTPUT
from ._tap import is_fused_layer, tap

_MEMO = weakref.WeakKeyDictionary()  # model -> (fingerprint, {name: canonical})
_LOCK = threading.Lock()


class _Watch:
    _sklearn_layers_internal = True  # not part of the model's identity

    def __init__(self, observer, name):
        self.observer, self.name = observer, name

    def __call__(self, module, args, output=None):
        self.report(args if output is None else output)

    def report(self, value):
        tensor = first_tensor(value)
        if tensor is not None:
            self.observer.seen(self.name, tensor)


class AliasObserver:
    """Watches every module during one forward pass and groups aliased names.

    Modules inside a fused ``nn.TransformerEncoderLayer`` are not watched (a
    hook there would switch the fused kernel off, and on the fused path they
    do not run); the layer itself is watched through a tap.
    """

    def __init__(self):
        self._groups = {}
        self._keep = []
        self._order = {}

    def seen(self, name, tensor):
        self._keep.append(tensor)  # alive, so no other tensor reuses its id
        self._groups.setdefault((id(tensor), tensor._version), []).append(name)

    def attach(self, model):
        """Install the watches; return handles with ``remove()``."""
        handles, fused = [], []
        for index, (path, module) in enumerate(model.named_modules()):
            self._order[path] = index
            if any(path.startswith(prefix + ".") for prefix in fused):
                continue
            watch_out = _Watch(self, path or OUTPUT)
            watch_in = _Watch(self, path + INPUT_SUFFIX)
            if path and is_fused_layer(module):
                fused.append(path)
                handles += [tap(module, "output", watch_out.report),
                            tap(module, "input", watch_in.report)]
                continue
            handles.append(module.register_forward_hook(watch_out))
            if path:
                handles.append(module.register_forward_pre_hook(watch_in))
        return handles

    def aliases(self):
        """Name -> canonical name, for names in groups of two or more.

        The canonical name is an output before an input, a shallower path
        before a deeper one, an earlier module before a later one.
        """
        order = self._order

        def preference(name):
            return (
                name == OUTPUT,
                name.endswith(INPUT_SUFFIX),
                name.count("."),
                order.get(name.removesuffix(INPUT_SUFFIX), len(order)),
            )

        found = {}
        for names in self._groups.values():
            unique = list(dict.fromkeys(names))
            if len(unique) > 1:
                canonical = min(unique, key=preference)
                found.update({name: canonical for name in unique})
        self._keep.clear()
        return found


def known_aliases(model, fingerprint):
    """The memoised alias map of ``model`` at ``fingerprint``, or None."""
    with _LOCK:
        memo = _MEMO.get(model)
    return memo[1] if memo is not None and memo[0] == fingerprint else None


def remember_aliases(model, fingerprint, aliases):
    with _LOCK:
        _MEMO[model] = (fingerprint, aliases)


def drop_alias(model, name, canonical):
    """Stop treating ``name`` as ``canonical`` for ``model`` (they disagreed)."""
    with _LOCK:
        memo = _MEMO.get(model)
        if memo is not None:
            memo[1].pop(name, None)
    warnings.warn(
        f"Layer {name!r} returned the very tensor of {canonical!r} on the row used "
        "to trace the model, but not on every row: they are now cached separately.",
        RuntimeWarning,
        stacklevel=4,
    )
