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
import sys
import threading
import warnings
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np
import xxhash

from ._npz import read_entry, write_entry

# An evicted key is remembered (for the eviction warning) as a 64-bit hash and
# its size, two ints of about this many bytes together, plus its table slot.
_TRACKED_INTS_BYTES = 64


class MemoryCache:
    """In-process activation cache bounded in bytes, least-recently-used first out.

    A ``MemoryCache`` is shared by reference: clones of a transformer (and so all
    candidates of a grid search) use the same instance. Pickling keeps the bound
    and drops the contents.

    The bound counts everything the cache holds, as ``tracemalloc`` measures
    it: each entry's key, digest and value, the table holding them (its size
    as Python reports it, spare capacity included), and the hashes of recently
    evicted keys (at most a sixteenth of the bound). When rows it evicted are
    requested again, it warns once, with a lower bound on the size that would
    have held them.

    Parameters
    ----------
    max_bytes : int, default=1_073_741_824
        Upper bound on the bytes held.

    Attributes
    ----------
    computed_here : bool
        True: every entry was computed by this process (none read from files).
    nbytes : int
        Bytes currently held.
    hits, misses : int
        Row x layer lookups served and missed since creation.
    """

    computed_here = True

    def __init__(self, max_bytes=1 << 30):
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self._warned = False
        self._reset()

    def _reset(self):
        self._entries = OrderedDict()
        self._object_bytes = 0  # keys, digests and values of the entries
        self._evicted = OrderedDict()  # hash of an evicted key -> its bytes
        self._evicted_bytes = 0

    @property
    def nbytes(self):
        """Bytes currently held (entries, their table, the eviction record)."""
        return self._object_bytes + sys.getsizeof(self._entries) + self._tracking_bytes()

    def _tracking_bytes(self):
        return sys.getsizeof(self._evicted) + _TRACKED_INTS_BYTES * len(self._evicted)

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
            self._reset()
            self._warned = False

    def lookup(self, fingerprint, layer_keys, digests):
        """Return cached rows (``None`` where missing) for each layer key.

        Served rows are read-only float32 arrays.
        """
        found, recomputed = {}, 0
        with self._lock:
            for layer_key in layer_keys:
                rows = []
                for digest in digests:
                    key = (fingerprint, layer_key, digest)
                    value = self._entries.get(key)
                    if value is None:
                        self.misses += 1
                        if self._evicted and _key_hash(key) in self._evicted:
                            recomputed += 1
                        rows.append(None)
                    else:
                        self._entries.move_to_end(key)
                        self.hits += 1
                        rows.append(np.frombuffer(value, dtype=np.float32))
                found[layer_key] = rows
            needed = self._object_bytes + sys.getsizeof(self._entries) + self._evicted_bytes
        if recomputed and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self!r} evicted rows that are requested again, so {recomputed} "
                "rows x layers go through the network once more. Holding the rows "
                f"stored so far needs max_bytes of at least {needed:,}.",
                RuntimeWarning,
                stacklevel=4,
            )
        return found

    def store(self, fingerprint, features, digests):
        """Store each row of each layer's feature matrix, evicting the oldest."""
        fingerprint = sys.intern(fingerprint)
        with self._lock:
            for layer_key, matrix in features.items():
                layer_key = sys.intern(layer_key)
                matrix = np.ascontiguousarray(matrix, dtype=np.float32)
                for digest, row in zip(digests, matrix):
                    key = (fingerprint, layer_key, digest)
                    value = row.tobytes()
                    size = _object_bytes(key, value)
                    if size > self.max_bytes:
                        continue
                    old = self._entries.pop(key, None)
                    if old is not None:
                        self._object_bytes -= _object_bytes(key, old)
                    self._entries[key] = value
                    self._object_bytes += size
            while self.nbytes > self.max_bytes and self._entries:
                key, old = self._entries.popitem(last=False)
                size = _object_bytes(key, old)
                self._object_bytes -= size
                self._remember_eviction(key, size)
            if not self._entries:
                self._entries = OrderedDict()  # release an emptied table

    def _remember_eviction(self, key, size):
        h = _key_hash(key)
        if h in self._evicted:
            return
        self._evicted[h] = size
        self._evicted_bytes += size
        while self._evicted and self._tracking_bytes() * 16 > self.max_bytes:
            _, dropped = self._evicted.popitem(last=False)
            self._evicted_bytes -= dropped


def _object_bytes(key, value):
    return sys.getsizeof(key) + sys.getsizeof(key[2]) + sys.getsizeof(value)


def _key_hash(key):
    return xxhash.xxh3_64_intdigest(f"{key[0]}|{key[1]}|".encode() + key[2])


_DEFAULT = MemoryCache()


def default_memory_cache():
    """The process-wide cache used by ``cache="memory"``."""
    return _DEFAULT


class DiskCache:
    """Activation cache in a directory, shared by worker processes.

    One file per (model fingerprint, row) holds that row's features for every
    layer key stored so far, as an uncompressed ``.npz``. Writes go to a
    temporary file in the same directory and are renamed into place, so
    readers see a whole entry or none. Reading never unpickles, opens regular
    files only and checks each member's header against the bytes present
    before reading: a truncated, corrupt or foreign file (a FIFO, a plain
    ``.npy``, a zip whose headers claim more than it holds, rows of another
    dtype) counts as a miss and is rewritten. When the directory cannot be
    written (read-only, disk full) the features are still returned, with a
    warning.

    Rows read or written by this process are also kept in an in-memory
    :class:`MemoryCache` front of ``memory_bytes``, so repeated lookups (the
    folds and candidates of a grid search) do not reread files.

    Parameters
    ----------
    path : str or os.PathLike
        The cache directory (created on the first write).
    memory_bytes : int, default=268_435_456
        Bound of the in-memory front; 0 turns it off.
    """

    def __init__(self, path, memory_bytes=256 << 20):
        self.path = Path(path)
        self.memory_bytes = memory_bytes
        self._front = MemoryCache(memory_bytes) if memory_bytes else None
        self._warned = False
        self.wrote = False

    def __repr__(self):
        return f"DiskCache({str(self.path)!r})"

    def __deepcopy__(self, memo):
        return self

    def _file(self, fingerprint, digest):
        name = digest.hex()
        return self.path / fingerprint / name[:2] / f"{name}.npz"

    def lookup(self, fingerprint, layer_keys, digests):
        """Return cached rows (``None`` where missing or unreadable) per layer key."""
        if self._front is not None:
            found = self._front.lookup(fingerprint, layer_keys, digests)
        else:
            found = {key: [None] * len(digests) for key in layer_keys}
        for i, digest in enumerate(digests):
            if all(found[key][i] is not None for key in layer_keys):
                continue
            entry = read_entry(self._file(fingerprint, digest)) or {}
            for layer_key in layer_keys:
                value = entry.get(_npz_name(layer_key))
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
            entry = read_entry(file) or {}
            for layer_key, matrix in matrices.items():
                entry[_npz_name(layer_key)] = matrix[i]
            try:
                write_entry(file, entry)
            except OSError as exc:
                self._warn(exc)
                return
            self.wrote = True

    def _warn(self, exc):
        if not self._warned:
            warnings.warn(
                f"Could not write to the activation cache {str(self.path)!r} ({exc}); "
                "features are computed and returned but not cached.",
                RuntimeWarning,
                stacklevel=4,
            )
            self._warned = True


def _npz_name(layer_key):
    # npz member names become file names inside the zip: keep them plain
    return layer_key.encode("utf-8").hex()


class _DiskCaches:
    """One :class:`DiskCache` per directory and process, released when unused.

    The most recently used few are held strongly (so the folds and candidates
    of a grid search, which resolve ``cache=path`` again and again, share one
    in-memory front); the others live only as long as someone holds them. A
    directory that has disappeared gets a fresh instance.
    """

    def __init__(self, keep=4):
        self._keep = keep
        self._recent = OrderedDict()
        self._alive = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def get(self, path):
        key = os.path.realpath(os.fspath(path))
        with self._lock:
            for old in [k for k, d in self._recent.items() if d.wrote and not d.path.is_dir()]:
                del self._recent[old]  # its directory is gone: free its front
            disk = self._alive.get(key)
            if disk is None or (disk.wrote and not disk.path.is_dir()):
                disk = self._alive[key] = DiskCache(path)
            self._recent[key] = disk
            self._recent.move_to_end(key)
            while len(self._recent) > self._keep:
                self._recent.popitem(last=False)
            return disk


_DISK_CACHES = _DiskCaches()


def make_cache(cache):
    """Resolve the transformer's ``cache`` parameter to a cache object or None."""
    if cache is None:
        return None
    if isinstance(cache, str) and cache == "memory":
        return default_memory_cache()
    if isinstance(cache, (str, os.PathLike)):
        if not os.fspath(cache).strip():
            raise ValueError(
                "cache='' names no directory; pass 'memory', a directory path, a "
                "MemoryCache/DiskCache or None."
            )
        return _DISK_CACHES.get(cache)
    if hasattr(cache, "lookup") and hasattr(cache, "store"):
        return cache
    raise ValueError(
        f"cache must be 'memory', a directory path, a MemoryCache/DiskCache or None; "
        f"got {cache!r}."
    )
