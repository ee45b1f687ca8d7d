"""Row-keyed activation caches: in memory (bounded, LRU) or on disk.

An entry is the pooled feature vector of one input row at one layer, keyed by
``(model fingerprint, layer|pooling, row digest)``. Frozen feature extraction is
row-independent, so serving a row computed during another fold's transform
leaks nothing: the value is exactly what a fresh forward would return.

Both caches implement the same two methods:

``lookup(fingerprint, layer_keys, digests) -> dict layer_key -> list``
    For each layer key, one entry per row: a 1-D float32 array or ``None``.
``store(fingerprint, features, digests)``
    ``features`` maps layer key -> ``(n_rows, n_features)`` array.
"""

import os
import tempfile
import threading
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

_ENTRY_OVERHEAD = 200  # bytes of dict/key bookkeeping per entry, for the bound


class MemoryCache:
    """In-process activation cache bounded in bytes, least-recently-used first out.

    A ``MemoryCache`` is shared by reference: clones of a transformer (and so all
    candidates of a grid search) use the same instance. Pickling keeps the bound
    and drops the contents.

    Parameters
    ----------
    max_bytes : int, default=1_073_741_824
        Upper bound on the bytes held (feature arrays plus bookkeeping).

    Attributes
    ----------
    nbytes : int
        Bytes currently held.
    hits, misses : int
        Row x layer lookups served and missed since creation.
    """

    def __init__(self, max_bytes=1 << 30):
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._entries = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    def __repr__(self):
        return f"MemoryCache(max_bytes={self.max_bytes})"

    def __deepcopy__(self, memo):
        return self  # shared by reference across clones

    def __reduce__(self):
        return (type(self), (self.max_bytes,))

    def __len__(self):
        return len(self._entries)

    def clear(self):
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def lookup(self, fingerprint, layer_keys, digests):
        """Return cached rows (``None`` where missing) for each layer key."""
        found = {}
        with self._lock:
            for layer_key in layer_keys:
                rows = []
                for digest in digests:
                    key = (fingerprint, layer_key, digest)
                    value = self._entries.get(key)
                    if value is None:
                        self.misses += 1
                    else:
                        self._entries.move_to_end(key)
                        self.hits += 1
                    rows.append(value)
                found[layer_key] = rows
        return found

    def store(self, fingerprint, features, digests):
        """Store each row of each layer's feature matrix, evicting the oldest."""
        with self._lock:
            for layer_key, matrix in features.items():
                matrix = np.asarray(matrix, dtype=np.float32)
                row_bytes = matrix.shape[1] * 4 + _ENTRY_OVERHEAD
                if row_bytes > self.max_bytes:
                    continue
                for digest, row in zip(digests, matrix):
                    key = (fingerprint, layer_key, digest)
                    old = self._entries.pop(key, None)
                    if old is not None:
                        self.nbytes -= old.nbytes + _ENTRY_OVERHEAD
                    value = row.copy()
                    value.flags.writeable = False  # a served row cannot be edited
                    self._entries[key] = value
                    self.nbytes += row_bytes
            while self.nbytes > self.max_bytes and self._entries:
                _, old = self._entries.popitem(last=False)
                self.nbytes -= old.nbytes + _ENTRY_OVERHEAD


_DEFAULT = MemoryCache()


def default_memory_cache():
    """The process-wide cache used by ``cache="memory"``."""
    return _DEFAULT


class DiskCache:
    """Activation cache in a directory, shared by worker processes.

    One file per (model fingerprint, row) holds that row's features for every
    layer key stored so far, as an uncompressed ``.npz`` read with
    ``allow_pickle=False`` (a cache directory is never a code-execution path).
    Writes go to a temporary file in the same directory and are renamed into
    place, so readers see a whole entry or none. A truncated or corrupt entry
    fails the zip CRC or the shape checks, counts as a miss, and is rewritten.
    When the directory cannot be written (read-only, disk full) the features are
    still returned, with a warning.

    Rows read or written by this process are also kept in an in-memory
    :class:`MemoryCache` front of ``memory_bytes``, so repeated lookups (the
    folds and candidates of a grid search) do not reread files.

    Parameters
    ----------
    path : str or os.PathLike
        The cache directory (created if missing).
    memory_bytes : int, default=268_435_456
        Bound of the in-memory front; 0 turns it off.
    """

    def __init__(self, path, memory_bytes=256 << 20):
        self.path = Path(path)
        self.memory_bytes = memory_bytes
        self._front = MemoryCache(memory_bytes) if memory_bytes else None
        self._warned = False

    def __repr__(self):
        return f"DiskCache({str(self.path)!r})"

    def __deepcopy__(self, memo):
        return self

    def _file(self, fingerprint, digest):
        name = digest.hex()
        return self.path / fingerprint / name[:2] / f"{name}.npz"

    def _read(self, file):
        try:
            # open the file here: np.load leaks its own handle on a corrupt zip
            with open(file, "rb") as handle, np.load(handle, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
            return None  # corrupt or truncated: a miss, rewritten by store()

    def lookup(self, fingerprint, layer_keys, digests):
        """Return cached rows (``None`` where missing or unreadable) per layer key."""
        if self._front is not None:
            found = self._front.lookup(fingerprint, layer_keys, digests)
        else:
            found = {key: [None] * len(digests) for key in layer_keys}
        for i, digest in enumerate(digests):
            if all(found[key][i] is not None for key in layer_keys):
                continue
            entry = self._read(self._file(fingerprint, digest)) or {}
            for layer_key in layer_keys:
                value = entry.get(_npz_name(layer_key))
                if value is not None and (value.ndim != 1 or value.dtype != np.float32):
                    value = None
                if value is not None and self._front is not None:
                    self._front.store(fingerprint, {layer_key: value[None]}, [digest])
                if found[layer_key][i] is None:
                    found[layer_key][i] = value
        return found

    def store(self, fingerprint, features, digests):
        """Merge each row's features into its file, atomically."""
        matrices = {k: np.asarray(v, dtype=np.float32) for k, v in features.items()}
        if self._front is not None:
            self._front.store(fingerprint, matrices, digests)
        for i, digest in enumerate(digests):
            file = self._file(fingerprint, digest)
            entry = self._read(file) or {}
            for layer_key, matrix in matrices.items():
                entry[_npz_name(layer_key)] = matrix[i]
            try:
                self._write(file, entry)
            except OSError as exc:
                self._warn(exc)
                return

    def _write(self, file, entry):
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **entry)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, file)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _warn(self, exc):
        if not self._warned:
            warnings.warn(
                f"Could not write to the activation cache {str(self.path)!r} ({exc}); "
                "features are computed and returned but not cached.",
                RuntimeWarning,
                stacklevel=4,
            )
            self._warned = True


_DISK_CACHES = {}
_DISK_LOCK = threading.Lock()


def _npz_name(layer_key):
    # npz member names become file names inside the zip: keep them plain
    return layer_key.encode("utf-8").hex()


def make_cache(cache):
    """Resolve the transformer's ``cache`` parameter to a cache object or None."""
    if cache is None:
        return None
    if isinstance(cache, str) and cache == "memory":
        return default_memory_cache()
    if isinstance(cache, (str, os.PathLike)):
        # one DiskCache (and so one in-memory front) per directory and process
        key = os.path.realpath(os.fspath(cache))
        with _DISK_LOCK:
            disk = _DISK_CACHES.get(key)
            if disk is None:
                disk = _DISK_CACHES[key] = DiskCache(cache)
        return disk
    if hasattr(cache, "lookup") and hasattr(cache, "store"):
        return cache
    raise ValueError(
        f"cache must be 'memory', a directory path, a MemoryCache/DiskCache or None; "
        f"got {cache!r}."
    )
