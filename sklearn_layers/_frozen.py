"""Model handles: resolve what a user passes as ``model``; ``FrozenModel``."""

import contextlib
import hashlib
import inspect
import itertools
import os
import pickle
import tempfile
import threading

import torch
from torch import nn


def resolve_module(model, n_features_in=None):
    """Return the ``nn.Module`` behind ``model``.

    Parameters
    ----------
    model : nn.Module, FrozenModel, fitted skorch net, object with a ``module`` \
            attribute, or callable
        A module is used as is (by reference). A :class:`FrozenModel` gives its
        loaded (per-process cached) module. A fitted skorch ``NeuralNet`` gives
        its ``module_``. An object exposing an ``nn.Module`` as ``module`` (such as
        a model handle) gives that. Any other callable is a factory, called as
        ``model(n_features_in)`` when it takes an argument and ``model()``
        otherwise; it must return an ``nn.Module``.
    n_features_in : int, default=None
        Passed to a factory.

    Returns
    -------
    module : torch.nn.Module
    """
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, FrozenModel):
        return model.module
    for attribute in ("module_", "module"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module):
            return inner
    if hasattr(model, "initialize") and hasattr(model, "module"):
        raise ValueError(
            f"The skorch net {type(model).__name__} is not fitted (it has no "
            "module_); fit or initialize() it before extracting its layers."
        )
    if callable(model):
        try:
            takes_argument = bool(inspect.signature(model).parameters)
        except (TypeError, ValueError):
            takes_argument = False
        built = model(n_features_in) if takes_argument else model()
        if not isinstance(built, nn.Module):
            raise TypeError(
                f"The model factory {model!r} returned {type(built).__name__}, not a "
                "torch.nn.Module."
            )
        return built
    raise TypeError(
        "model must be a torch.nn.Module, a fitted skorch net, a model handle or a "
        f"factory returning a module; got {type(model).__name__}."
    )


# ---------------------------------------------------------------------------
# FrozenModel: a model handle that travels as (factory, path, content hash)
# ---------------------------------------------------------------------------

_LOAD_LOCK = threading.Lock()
# (absolute path, sha256) -> [module, file identity at load]; one load per process
_LOADED = {}
# (absolute path, file identity) -> sha256; a file is hashed once per process
_HASHES = {}
_CHUNK = 1 << 20


def _file_identity(path):
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _sha256(path):
    """The file's sha256, computed once per process per (path, inode, size, mtime)."""
    identity = _file_identity(path)
    key = (path, identity)
    digest = _HASHES.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(_CHUNK), b""):
                h.update(chunk)
        digest = h.hexdigest()
        _HASHES[key] = digest
    return digest, identity


def _check_factory(factory):
    if not callable(factory):
        raise TypeError(
            f"factory must be a callable returning a torch.nn.Module; got "
            f"{type(factory).__name__}."
        )
    try:
        pickle.dumps(factory)
    except Exception as exc:  # pickle raises several types for local objects
        raise TypeError(
            f"factory={factory!r} cannot be pickled by reference. A FrozenModel "
            "travels to worker processes as (factory, path, hash), so the factory "
            "must be importable there: a top-level function or class of a module "
            "(or a functools.partial of one), not a lambda or a nested function."
        ) from exc


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


class FrozenModel:
    """A frozen network as a factory plus a weights file, cheap to pickle.

    A large ``nn.Module`` passed as a parameter is pickled with the estimator
    for every task a joblib or Dask backend sends to a worker (about 0.4 s each
    way for 130 MiB). A ``FrozenModel`` pickles to a few hundred bytes -- the
    factory's import path, the file path and the file's sha256 -- and loads the
    weights once per process: the architecture is built on the ``meta`` device
    (no memory, no initialisation), the file is memory-mapped with
    ``torch.load(path, mmap=True, weights_only=True)`` and its tensors are
    assigned to the module with ``load_state_dict(assign=True)``. Loading takes
    milliseconds and the pages are shared by every process on the machine.

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
        The file's expected sha256. ``None`` hashes the file now. The file is
        checked against it when it is loaded in a process, so a handle never
        silently serves other weights than the ones it was made for.

    Attributes
    ----------
    module : torch.nn.Module
        The loaded network, in eval mode with ``requires_grad=False``; loaded on
        first access in each process and cached.

    See Also
    --------
    LayerFeatureTransformer : Features from the layers of a network.

    Notes
    -----
    Every process that touches ``module`` hashes the file once (about 0.2 s per
    100 MiB) and loads it once; later accesses only ``stat`` the file. A file
    changed after the handle was made raises a ``ValueError`` instead of
    serving other weights. Replace weights by writing a new file (or writing
    elsewhere and ``os.replace``-ing it): overwriting a memory-mapped file in
    place under a running process can crash that process.

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
        _check_factory(factory)
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
        elif not (isinstance(sha256, str) and len(sha256) == 64):
            raise ValueError(
                f"sha256 must be a 64-character hex digest; got {sha256!r}."
            )
        self.sha256 = sha256.lower()

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
        _check_factory(factory)
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
        """The loaded network (loaded once per process, then cached)."""
        key = (self.weights, self.sha256)
        with _LOAD_LOCK:
            entry = _LOADED.get(key)
            if entry is not None:
                try:
                    unchanged = _file_identity(self.weights) == entry[1]
                except OSError:
                    unchanged = False
                if unchanged:
                    return entry[0]
            identity = self._verify()
            if entry is not None:  # touched (same bytes): keep the loaded module
                entry[1] = identity
                return entry[0]
            module = self._load()
            _LOADED[key] = [module, identity]
            return module

    def _verify(self):
        try:
            digest, identity = _sha256(self.weights)
        except OSError as exc:
            raise ValueError(
                f"Cannot read the weights file {self.weights!r} of this FrozenModel "
                f"({exc}). On several machines it must be on a shared filesystem at "
                "the same path."
            ) from exc
        if digest != self.sha256:
            raise ValueError(
                f"The weights file {self.weights!r} changed since this FrozenModel was "
                f"made: its sha256 is {digest[:12]}..., expected "
                f"{self.sha256[:12]}.... Restore the file, or make a new handle "
                "with FrozenModel(factory, path)."
            )
        return identity

    def _load(self):
        with torch.device("meta"):
            module = self.factory()
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"The factory {self.factory!r} returned {type(module).__name__}, not a "
                "torch.nn.Module."
            )
        state = torch.load(
            self.weights, mmap=True, weights_only=True, map_location="cpu"
        )
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
        return module.eval()

    def __reduce__(self):
        return (_restore, (self.factory, self.weights, self.sha256))

    def __deepcopy__(self, memo):
        return self  # a frozen network is shared by reference

    def __copy__(self):
        return self

    def __eq__(self, other):
        if not isinstance(other, FrozenModel):
            return NotImplemented
        return (self.factory, self.weights, self.sha256) == (
            other.factory,
            other.weights,
            other.sha256,
        )

    def __hash__(self):
        return hash((self.weights, self.sha256))

    def __repr__(self):
        name = getattr(self.factory, "__qualname__", None) or repr(self.factory)
        return (
            f"FrozenModel({name}, weights={self.weights!r}, "
            f"sha256='{self.sha256[:12]}...')"
        )


def _restore(factory, weights, sha256):
    return FrozenModel(factory, weights, sha256=sha256)


def _clear_loaded():
    """Forget every loaded FrozenModel of this process (for tests)."""
    with _LOAD_LOCK:
        _LOADED.clear()
        _HASHES.clear()
