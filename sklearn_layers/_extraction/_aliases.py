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

Only what a capture keeps is watched: a module's first input and output in a
forward pass. A module called twice (one ``self.relu`` used twice, as
torchvision's ``BasicBlock`` does) is captured at its first call, so its
second output aliases nothing under its name.

The map is observed on the first row a model meets (per model key) and kept
on the cache object (and in a disk cache's database, for the next process);
an extraction that prefetches nothing observes only up to its early exit, and
a later one that prefetches observes the whole forward pass once.
Whenever an extraction captures two names of one group, their features are
compared on the traced row and on every batch that goes through the network
before anything is stored under their shared key; a name that disagrees (a
module that returns the same object only for some inputs) loses its alias.
"""

import threading
import warnings

from ._capture import first_tensor
from ._fingerprint import memo_of
from ._layers import INPUT_SUFFIX, OUTPUT
from ._tap import is_fused_layer, tap


class _Watch:
    _sklearn_layers_internal = True  # not part of the model's identity

    def __init__(self, observer, name):
        self.observer, self.name = observer, name

    def __call__(self, module, args, output=None):
        self.report(args if output is None else output)

    def report(self, value):
        self.observer.seen(self.name, first_tensor(value))


class AliasObserver:
    """Watches every module during one forward pass and groups aliased names.

    Modules inside a fused ``nn.TransformerEncoderLayer`` are not watched (a
    hook there would switch the fused kernel off, and on the fused path they
    do not run); the layer itself is watched through a tap.
    """

    def __init__(self):
        self._groups = {}
        self._watched = set()
        self._keep = []
        self._order = {}
        self._owner = threading.get_ident()

    def seen(self, name, tensor):
        """Record what ``name`` received or returned (``tensor`` may be None).

        Only the first call of a name counts, as in :func:`._capture.capture`,
        and only in the observing thread (another thread may run the model).
        """
        if name in self._watched or threading.get_ident() != self._owner:
            return
        self._watched.add(name)
        if tensor is None:
            return
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


def known_aliases(cache, key, *, complete):
    """The alias map the cache holds for the model ``key``, or None.

    ``complete=True`` asks for a map observed over a whole forward pass; a map
    observed up to an early exit only covers the modules that ran. A disk
    cache keeps maps for the next process (``load_aliases``).
    """
    memo = memo_of(cache)
    with memo.lock:
        known = memo.aliases.get(key)
    if known is None and hasattr(cache, "load_aliases"):
        known = cache.load_aliases(key)
        if known is not None:
            with memo.lock:
                memo.aliases[key] = known
    if known is None or (complete and not known[1]):
        return None
    return dict(known[0])


def remember_aliases(cache, key, aliases, *, complete):
    memo = memo_of(cache)
    with memo.lock:
        memo.aliases.pop(key, None)
        memo.aliases[key] = (dict(aliases), complete)
        while len(memo.aliases) > 256:  # a model edited in a loop: keep the recent states
            del memo.aliases[next(iter(memo.aliases))]
    if hasattr(cache, "save_aliases"):
        cache.save_aliases(key, aliases, complete)


def drop_alias(cache, key, name, canonical, *, on_traced_row=False):
    """Stop treating ``name`` as ``canonical`` for the model ``key`` (they disagreed).

    ``on_traced_row`` says that they disagreed on the very row the alias was
    observed on, not on a later one.
    """
    memo = memo_of(cache)
    with memo.lock:
        known = memo.aliases.get(key)
    if known is not None and name in known[0]:
        aliases = {n: c for n, c in known[0].items() if n != name}
        remember_aliases(cache, key, aliases, complete=known[1])
    if on_traced_row:
        message = (
            f"Layer {name!r} was traced as the very tensor of {canonical!r}, but their "
            "features differ on the row used to trace the model: they are now cached "
            "separately."
        )
    else:
        message = (
            f"Layer {name!r} returned the very tensor of {canonical!r} on the row used "
            "to trace the model, but not on every row: they are now cached separately."
        )
    warnings.warn(message, RuntimeWarning, stacklevel=5)
