"""FrozenModel: a frozen network as a factory plus a weights file, cheap to pickle."""

import collections
import contextlib
import hashlib
import inspect
import io
import itertools
import os
import pickle
import re
import tempfile
import threading
import weakref
from collections.abc import Mapping

import torch
from torch import nn

_CHUNK = 1 << 20
# Loaded modules kept alive after the last handle on them is gone, so that a
# worker process running one task after another does not reload the weights
# for every task; the most recently used ones are kept.
_KEEP_LOADED = 2
# sha256 digests of files, by (path, file identity): hashing a big file once
# per process is enough while it does not change.
_KEEP_HASHES = 64
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
# pickle protocol of factory keys: fixed so a key never depends on the default
_KEY_PROTOCOL = 4


class _Loaded:
    """A loaded module and the identity of the file it was verified against."""

    __slots__ = ("module", "identity", "__weakref__")

    def __init__(self, module, identity):
        self.module = module
        self.identity = identity


class _Registry:
    """Loaded modules of this process, by (path, sha256, factory key).

    Entries are held weakly (a handle holds its entry; nothing else has to), and
    the ``_KEEP_LOADED`` most recently used ones strongly.
    """

    def __init__(self):
        self.lock = threading.RLock()
        self.weak = weakref.WeakValueDictionary()
        self.recent = collections.OrderedDict()
        self.hashes = collections.OrderedDict()

    def get(self, key):
        entry = self.weak.get(key)
        if entry is not None:
            self.keep(key, entry)
        return entry

    def keep(self, key, entry):
        self.weak[key] = entry
        self.recent[key] = entry
        self.recent.move_to_end(key)
        while len(self.recent) > _KEEP_LOADED:
            self.recent.popitem(last=False)

    def remember_hash(self, key, digest):
        self.hashes[key] = digest
        self.hashes.move_to_end(key)
        while len(self.hashes) > _KEEP_HASHES:
            self.hashes.popitem(last=False)

    def clear(self):
        self.weak.clear()
        self.recent.clear()
        self.hashes.clear()


_LOADED = _Registry()


def _identity(st):
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _file_identity(path):
    return _identity(os.stat(path))


def _sha256(path):
    """The file's sha256 and identity, hashed once per (path, identity)."""
    identity = _file_identity(path)
    with _LOADED.lock:
        digest = _LOADED.hashes.get((path, identity))
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                h.update(chunk)
        digest = h.hexdigest()
        with _LOADED.lock:
            _LOADED.remember_hash((path, identity), digest)
    return digest, identity


def _factory_key(factory):
    """What identifies a factory: its pickle (how it travels to workers).

    For a function or class that is its module and qualified name; for a
    ``functools.partial`` also the wrapped callable, the arguments and the
    keywords; for a callable object, its class and state.
    """
    if not callable(factory):
        raise TypeError(
            f"factory must be a callable returning a torch.nn.Module; got "
            f"{type(factory).__name__}."
        )
    try:
        pickled = pickle.dumps(factory, protocol=_KEY_PROTOCOL)
    except Exception as exc:  # pickle raises several types for local objects
        raise TypeError(
            f"factory={factory!r} cannot be pickled by reference. A FrozenModel "
            "travels to worker processes as (factory, path, hash), so the factory "
            "must be importable there: a top-level function or class of a module "
            "(or a functools.partial of one), not a lambda or a nested function."
        ) from exc
    return hashlib.sha256(pickled).hexdigest()


def _check_sha256(sha256):
    if not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise ValueError(
            "sha256 must be the file's sha256 as a string of 64 hexadecimal digits "
            f"(hashlib.sha256(data).hexdigest()); got {sha256!r}."
        )
    return sha256.lower()


def _state_signature(module):
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


def _mismatch(expected, built):
    missing = sorted(set(expected) - set(built))
    unexpected = sorted(set(built) - set(expected))
    shapes = sorted(k for k in set(expected) & set(built) if expected[k] != built[k])
    parts = []
    for what, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("with another shape or dtype", shapes),
    ):
        if keys:
            more = f", ... ({len(keys) - 5} more)" if len(keys) > 5 else ""
            parts.append(f"{what}: {keys[:5]}{more}")
    return "; ".join(parts)


def _memory_file():
    """A file descriptor of anonymous memory that ``torch.load`` can map, or None."""
    if not (hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")):
        return None
    try:
        fd = os.memfd_create("sklearn-layers-weights", os.MFD_CLOEXEC)
    except OSError:  # e.g. forbidden by a sandbox: fall back to a buffer
        return None
    return fd


@contextlib.contextmanager
def _private_copy(path):
    """Copy the file into memory of this process; yield (sha256, identity, source).

    ``source`` is what ``torch.load`` reads: on Linux an anonymous memory file
    (``memfd``) that ``torch.load(mmap=True)`` maps, so the tensors live in the
    copy itself and no second copy is made; elsewhere a ``BytesIO``. The digest
    is computed over the very bytes copied, so what is loaded is what was
    verified, and no later write to the file can reach the loaded tensors.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        identity = _identity(os.fstat(file.fileno()))
        fd = _memory_file()
        if fd is None:
            buffer = io.BytesIO()
            for chunk in iter(lambda: file.read(_CHUNK), b""):
                digest.update(chunk)
                buffer.write(chunk)
            buffer.seek(0)
        else:
            try:
                with open(fd, "wb", closefd=False) as copy:
                    for chunk in iter(lambda: file.read(_CHUNK), b""):
                        digest.update(chunk)
                        copy.write(chunk)
            except BaseException:
                os.close(fd)
                raise
    if fd is None:
        yield digest.hexdigest(), identity, buffer
        return
    try:
        yield digest.hexdigest(), identity, f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)  # the tensors' mapping keeps the memory alive


_EXPECTED = "a state_dict saved with torch.save(module.state_dict(), path)"


def _load_state(source, path):
    """``torch.load`` a state_dict, turning every failure into a clear error."""
    try:
        state = torch.load(
            source,
            mmap=isinstance(source, str),
            weights_only=True,
            map_location="cpu",
        )
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"Cannot load the weights file {path!r}: expected {_EXPECTED}. It holds "
            "objects other than tensors, which torch.load(weights_only=True) refuses "
            f"to unpickle ({str(exc).splitlines()[0]})."
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, ... by format
        raise ValueError(
            f"Cannot load the weights file {path!r}: expected {_EXPECTED}; "
            f"torch.load failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise ValueError(
            f"The weights file {path!r} holds a {type(state).__name__}; expected "
            f"{_EXPECTED} (a dict from parameter names to tensors)."
        )
    others = [
        k
        for k, v in state.items()
        if not isinstance(v, torch.Tensor) and not k.endswith("_extra_state")
    ]
    if others:
        raise ValueError(
            f"The weights file {path!r} holds a dict whose entries {others[:5]} are "
            f"not tensors; expected {_EXPECTED}. A training checkpoint holding a "
            "state_dict under some key must be saved as that state_dict alone."
        )
    return state


class FrozenModel:
    """A frozen network as a factory plus a weights file, cheap to pickle.

    A large ``nn.Module`` passed as a parameter is pickled with the estimator
    for every task a joblib or Dask backend sends to a worker (about 0.4 s each
    way for 130 MiB). A ``FrozenModel`` pickles to a few hundred bytes -- the
    factory's import path, the file path and the file's sha256 -- and loads the
    weights once per process: the architecture is built on the ``meta`` device
    (no memory, no initialisation), the file is copied into memory private to
    the process while its sha256 is checked, and the tensors of that copy are
    assigned to the module with ``load_state_dict(assign=True)``.

    Use it wherever a ``torch.nn.Module`` is accepted
    (:class:`LayerFeatureTransformer`, :class:`IntermediateLayerClassifier`,
    :func:`layer_sweep`). Like a module, it is shared by reference by
    ``clone`` and ``copy.deepcopy``.

    Parameters
    ----------
    factory : callable
        Called without arguments, it builds the architecture (its weights are
        then replaced by the file's). It must be importable where the handle is
        unpickled: a top-level function or class, or a ``functools.partial`` of
        one.
    weights : str or os.PathLike
        A file written by ``torch.save(module.state_dict(), path)``. Stored as
        an absolute path; on several machines it must be the same path on a
        shared filesystem.
    sha256 : str, default=None
        The file's expected sha256, 64 hexadecimal digits. ``None`` hashes the
        file now. The bytes loaded in a process are checked against it, so a
        handle never silently serves other weights than the ones it was made
        for.

    Attributes
    ----------
    module : torch.nn.Module
        The loaded network, in eval mode with ``requires_grad=False``; loaded on
        first access in each process and shared by every handle with the same
        factory, file and sha256.

    See Also
    --------
    LayerFeatureTransformer : Features from the layers of a network.

    Notes
    -----
    **What a loaded module is keyed by.** A process keeps the modules it loaded
    under (absolute path, sha256, factory), where the factory counts as what
    pickle records of it -- the module and qualified name of a function or
    class; for a ``functools.partial`` also its arguments and keywords; for a
    callable object its class and state. Handles that agree on all three share
    one module; any difference loads another. Not covered: code behind the same
    name changing inside a running process (``importlib.reload``), and anything
    a factory reads besides its arguments (environment variables, files): a
    factory must build the same architecture on every call.

    **What stays in memory.** A handle holds its loaded module; when the last
    handle and the last fitted estimator using a module are gone, the module
    is freed, except for the two most recently used ones, which a process
    keeps so that worker tasks do not reload them one after another.

    **The file.** Loading reads the file once, hashing exactly the bytes it
    loads, into memory of the process (on Linux an anonymous memory file that
    the tensors map, so there is a single copy). Overwriting or deleting the
    file afterwards never changes a loaded module. A file changed after the
    handle was made raises a ``ValueError`` in every process on the next
    ``module`` access (a ``stat`` per access; the file is hashed again only
    when its size, mtime or inode changed), so a grid search never runs with
    the weights in one process and fails in its workers. A file that is not a
    state_dict raises a ``ValueError`` naming it.

    Unpickling a ``FrozenModel`` imports its factory and, on first use, reads
    the weights with ``weights_only=True`` (tensors only, no code). Unpickle
    handles, like any scikit-learn estimator, only from sources you trust.

    Examples
    --------
    >>> import os, pickle, tempfile
    >>> from sklearn_layers import FrozenModel, LayerFeatureTransformer
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> net = make_mlp(4, hidden=(16, 8))
    >>> path = os.path.join(tempfile.mkdtemp(), "mlp.pt")
    >>> handle = FrozenModel.from_module(net, path, factory=make_mlp)
    >>> len(pickle.dumps(handle)) < 500
    True
    >>> handle.module is pickle.loads(pickle.dumps(handle)).module
    True
    >>> X = [[0.0, 1.0, 2.0, 3.0]]
    >>> LayerFeatureTransformer(handle, layers="3").fit_transform(X).shape
    (1, 8)
    """

    def __init__(self, factory, weights, *, sha256=None):
        self._factory_key = _factory_key(factory)
        self.factory = factory
        self.weights = os.path.abspath(os.fspath(weights))
        if sha256 is None:
            if not os.path.isfile(self.weights):
                raise FileNotFoundError(
                    f"The weights file {self.weights!r} does not exist; write it with "
                    "torch.save(module.state_dict(), path) or use "
                    "FrozenModel.from_module(module, path)."
                )
            sha256, _ = _sha256(self.weights)
        self.sha256 = _check_sha256(sha256)
        self._entry = None

    @classmethod
    def from_module(cls, module, path, factory=None):
        """Save ``module``'s weights to ``path`` and return a handle on them.

        Parameters
        ----------
        module : torch.nn.Module
            The network whose ``state_dict()`` is saved (on CPU).
        path : str or os.PathLike
            Where to write the weights. The file is written elsewhere in the
            same directory and renamed into place.
        factory : callable, default=None
            Rebuilds the architecture without arguments (see the class
            parameters). ``None`` uses ``type(module)`` when calling it without
            arguments rebuilds ``module``'s architecture.

        Returns
        -------
        handle : FrozenModel
        """
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"module must be a torch.nn.Module, got {type(module).__name__}."
            )
        expected = _state_signature(module)
        if factory is None:
            factory = type(module)
            try:
                inspect.signature(factory).bind()
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{factory.__name__} cannot be called without arguments, so it "
                    "cannot rebuild the architecture; pass factory=, a top-level "
                    f"callable returning the same architecture (e.g. "
                    f"functools.partial({factory.__name__}, ...))."
                ) from exc
        _factory_key(factory)
        with torch.device("meta"):
            built = factory()
        if not isinstance(built, nn.Module):
            raise TypeError(
                f"The factory {factory!r} returned {type(built).__name__}, not a "
                "torch.nn.Module."
            )
        difference = _mismatch(expected, _state_signature(built))
        if difference:
            raise ValueError(
                f"factory={factory!r} does not rebuild the module's architecture "
                f"({difference}). Pass a factory that does."
            )
        path = os.path.abspath(os.fspath(path))
        state = {k: v.detach().to("cpu") for k, v in module.state_dict().items()}
        fd, tmp = tempfile.mkstemp(
            dir=os.path.dirname(path), prefix=".tmp-", suffix=".pt"
        )
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(state, handle)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return cls(factory, path)

    @property
    def module(self):
        """The loaded network (loaded once per process, then shared)."""
        key = (self.weights, self.sha256, self._factory_key)
        with _LOADED.lock:
            entry = self._entry or _LOADED.get(key)
            if entry is None:
                entry = self._load()
            else:
                try:
                    unchanged = _file_identity(self.weights) == entry.identity
                except OSError:
                    unchanged = False
                if not unchanged:  # touched, replaced or gone: hash it again
                    entry.identity = self._verify()
            _LOADED.keep(key, entry)
            self._entry = entry
            return entry.module

    def _changed(self, digest):
        return ValueError(
            f"The weights file {self.weights!r} changed since this FrozenModel was "
            f"made: its sha256 is {digest[:12]}..., expected {self.sha256[:12]}.... "
            "Restore the file, or make a new handle with FrozenModel(factory, path)."
        )

    def _unreadable(self, exc):
        return ValueError(
            f"Cannot read the weights file {self.weights!r} of this FrozenModel "
            f"({exc}). On several machines it must be on a shared filesystem at "
            "the same path."
        )

    def _verify(self):
        try:
            digest, identity = _sha256(self.weights)
        except OSError as exc:
            raise self._unreadable(exc) from exc
        if digest != self.sha256:
            raise self._changed(digest)
        return identity

    def _load(self):
        with torch.device("meta"):
            module = self.factory()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"The factory {self.factory!r} returned {type(module).__name__}, not a "
                "torch.nn.Module."
            )
        try:
            with _private_copy(self.weights) as (digest, identity, source):
                if digest != self.sha256:
                    raise self._changed(digest)
                state = _load_state(source, self.weights)
        except OSError as exc:
            raise self._unreadable(exc) from exc
        try:
            module.load_state_dict(state, assign=True)
        except RuntimeError as exc:
            raise ValueError(
                f"The weights in {self.weights!r} do not fit the architecture built by "
                f"{self.factory!r}: {exc}"
            ) from exc
        if any(
            t.is_meta for t in itertools.chain(module.parameters(), module.buffers())
        ):
            # non-persistent buffers are not in the file: build for real instead
            module = self.factory()
            module.load_state_dict(state, assign=True)
        module.requires_grad_(False)
        return _Loaded(module.eval(), identity)

    def __reduce__(self):
        return (_restore, (self.factory, self.weights, self.sha256))

    def __deepcopy__(self, memo):
        return self  # a frozen network is shared by reference

    def __copy__(self):
        return self

    def __eq__(self, other):
        if not isinstance(other, FrozenModel):
            return NotImplemented
        return (self._factory_key, self.weights, self.sha256) == (
            other._factory_key,
            other.weights,
            other.sha256,
        )

    def __hash__(self):
        return hash((self._factory_key, self.weights, self.sha256))

    def __repr__(self):
        name = getattr(self.factory, "__qualname__", None) or repr(self.factory)
        return (
            f"FrozenModel({name}, weights={self.weights!r}, "
            f"sha256='{self.sha256[:12]}...')"
        )


def _restore(factory, weights, sha256):
    return FrozenModel(factory, weights, sha256=sha256)


def _clear_loaded():
    """Forget every loaded module and file hash of this process (for tests).

    Handles that already hold their module keep it.
    """
    with _LOADED.lock:
        _LOADED.clear()
