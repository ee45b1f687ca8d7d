"""Row-keyed activation caches: in memory (bounded, LRU) or on disk (SQLite).

An entry is one row's pooled features at one layer, keyed by ``(model key,
layer|pooling|precision, row digest)``.
"""

import os
import sqlite3
import sys
import threading
import time
import warnings
from collections import OrderedDict
from pathlib import Path

import numpy as np
import xxhash

from ._fingerprint import IdentityMemo


class MemoryCache:
    """In-process activation cache bounded in bytes, least-recently-used first out.

    Shared by reference by clones (all candidates of a grid search); pickling
    keeps the bound and drops the contents. The bound counts everything held,
    as ``tracemalloc`` measures it: entries, their table and the hashes of
    recently evicted keys (at most a sixteenth of the bound). When evicted
    rows are requested again, it warns once, with the size that would have
    held them.

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
    n_rows_computed : int
        Rows that went through the network in extractions using this cache.
    identity_memo : object
        What the cache remembers about the models it met, weakly keyed.
    """

    computed_here = True

    def __init__(self, max_bytes=1 << 30):
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.hits = self.misses = self.n_rows_computed = 0
        self.clear()

    def clear(self):
        """Drop every entry, and what the cache remembers about models."""
        with self._lock:
            self._entries, self._evicted = OrderedDict(), OrderedDict()  # evicted: hash -> bytes
            # bytes of the entries; of every key evicted (counted once while it is tracked)
            self._object_bytes = self._evicted_bytes = 0
            self._warned, self.identity_memo = False, IdentityMemo()

    @property
    def nbytes(self):
        """Bytes currently held (entries, their table, the eviction record)."""
        return self._object_bytes + sys.getsizeof(self._entries) + self._tracking_bytes()

    def _tracking_bytes(self):
        # per evicted key, a 64-bit hash and its size: two ints of about 64 bytes, and a slot
        return sys.getsizeof(self._evicted) + 64 * len(self._evicted)

    def __repr__(self):
        return f"MemoryCache(max_bytes={self.max_bytes})"

    def __deepcopy__(self, memo):
        return self  # shared by reference across clones

    def __reduce__(self):
        return (type(self), (self.max_bytes,))

    def __len__(self):
        return len(self._entries)

    def lookup(self, fingerprint, layer_keys, digests):
        """Cached rows (read-only float32, ``None`` where missing) per layer key."""
        found, recomputed = {}, 0
        with self._lock:
            for layer_key in layer_keys:
                keys = [(fingerprint, layer_key, digest) for digest in digests]
                found[layer_key] = rows = [self._entries.get(key) for key in keys]
                for i, value in enumerate(rows):
                    if value is None:
                        recomputed += bool(self._evicted) and _key_hash(keys[i]) in self._evicted
                    else:
                        self._entries.move_to_end(keys[i])
                        rows[i] = np.frombuffer(value, dtype=np.float32)
                self.hits += sum(r is not None for r in rows)
            self.misses += sum(r is None for rows in found.values() for r in rows)
            needed = self._object_bytes + sys.getsizeof(self._entries) + self._evicted_bytes
            warn, self._warned = recomputed and not self._warned, self._warned or bool(recomputed)
        if warn:
            warnings.warn(f"{self!r} evicted rows that are requested again, so {recomputed} "
                          "rows x layers go through the network once more. Holding the rows "
                          f"stored so far needs max_bytes of about {needed:,}.", RuntimeWarning,
                          stacklevel=4)
        return found

    def store(self, fingerprint, features, digests):
        """Store each row of each layer's feature matrix, evicting the oldest."""
        self._insert(fingerprint, [
            (layer_key, digest, row.tobytes()) for layer_key, matrix in features.items()
            for digest, row in zip(digests, np.ascontiguousarray(matrix, dtype=np.float32))])

    def _insert(self, fingerprint, entries):
        """Hold each ``(layer key, row digest, float32 bytes)``, evicting the oldest."""
        fingerprint = sys.intern(fingerprint)
        with self._lock:
            for layer_key, digest, value in entries:
                key = (fingerprint, sys.intern(layer_key), digest)
                size = _object_bytes(key, value)
                if size <= self.max_bytes:
                    old = self._entries.pop(key, None)
                    self._object_bytes += size - (0 if old is None else _object_bytes(key, old))
                    self._entries[key] = value
            while self.nbytes > self.max_bytes and self._entries:
                key, old = self._entries.popitem(last=False)
                size = _object_bytes(key, old)
                self._object_bytes -= size
                if (hashed := _key_hash(key)) not in self._evicted:
                    self._evicted[hashed] = size
                    self._evicted_bytes += size
                while self._evicted and self._tracking_bytes() * 16 > self.max_bytes:
                    self._evicted.popitem(last=False)  # its bytes stay counted as needed
            if not self._entries:
                self._entries = OrderedDict()  # release an emptied table


def _object_bytes(key, value):
    return sys.getsizeof(key) + sys.getsizeof(key[2]) + sys.getsizeof(value)


def _key_hash(key):
    return xxhash.xxh3_64_intdigest(f"{key[0]}|{key[1]}|".encode() + key[2])


_DEFAULT = MemoryCache()  # the one process-wide object: what cache="memory" means


_APPLICATION_ID = 0x534B4C59  # "SKLY" in the database header: a file of ours
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (model TEXT NOT NULL, layer TEXT NOT NULL, row BLOB NOT NULL,
    dtype TEXT NOT NULL, width INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (model, layer, row)) WITHOUT ROWID;
"""
_FLOAT32 = np.dtype("<f4").str
_CHUNK = 400  # rows per SELECT: layers x rows stay under SQLite's 32,766 variables


def _corrupt(exc):
    """Whether an error says the database file is damaged or not one of ours."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (11, 26) or code == 522  # CORRUPT, NOTADB, IOERR_SHORT_READ
    # raised by _open, or Python < 3.11 (no error codes): judge by the exact class, as
    # its subclasses (a misuse, a constraint) say nothing about the file
    return type(exc) is sqlite3.DatabaseError


class DiskCache:
    """Activation cache in an SQLite database, shared by processes and sessions.

    One table row per (model key, layer key, input row) in
    ``<path>/activations.sqlite``: float32 bytes with their dtype and width,
    checked before they are served, never unpickled. WAL mode, one transaction
    per batch: writers of different layers of the same rows lose nothing. A
    corrupt or foreign file is set aside and never served, and a directory
    that cannot be written still gives features (both with a warning). Rows
    this process read or wrote are also kept in a :class:`MemoryCache` front
    of ``memory_bytes``. Pickling keeps the path and the bound.

    Parameters
    ----------
    path : str or os.PathLike
        The cache directory (created on first use).
    memory_bytes : int, default=268_435_456
        Bound of the in-memory front; 0 turns it off.

    Attributes
    ----------
    n_rows_computed : int
        Rows that went through the network in extractions using this object.
    """

    computed_here = False  # rows may come from another process

    def __init__(self, path, memory_bytes=256 << 20):
        self.path, self.memory_bytes = Path(path), memory_bytes
        self._front = MemoryCache(memory_bytes) if memory_bytes else None
        self._lock = threading.RLock()
        self._db, self._pid, self._warned, self._inherited = None, None, set(), []
        self.n_rows_computed, self.identity_memo = 0, IdentityMemo()

    def __repr__(self):
        return f"DiskCache({str(self.path)!r})"

    def __deepcopy__(self, memo):
        return self  # shared by reference across clones

    def __reduce__(self):
        return (type(self), (str(self.path), self.memory_bytes))

    @property
    def file(self):
        """The database file, ``<path>/activations.sqlite``."""
        return self.path / "activations.sqlite"

    def _connection(self):
        """The open database (opened anew after a fork), or None when it cannot be used."""
        if self._pid != os.getpid():
            if self._db is not None:  # opened before a fork: never used, nor closed, here
                self._inherited.append(self._db)
            self._pid, self._db = os.getpid(), None
            try:
                self.path.mkdir(parents=True, exist_ok=True)
                self._db = self._open()
            except (OSError, sqlite3.Error) as exc:
                self._failed(exc)
        return self._db

    def _open(self):
        db = sqlite3.connect(self.file, timeout=60, isolation_level=None, check_same_thread=False)
        ours = "PRAGMA application_id"
        try:
            if db.execute(ours).fetchone()[0] != _APPLICATION_ID:
                db.execute("BEGIN IMMEDIATE")  # one process creates the table
                if db.execute(ours).fetchone()[0] != _APPLICATION_ID:
                    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                        raise sqlite3.DatabaseError("it holds another program's tables")
                    db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
                    db.execute(_SCHEMA)
                db.execute("COMMIT")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL: durable up to the last checkpoint
            return db
        except BaseException:
            db.close()
            raise

    def _run(self, work):
        """``work(db)`` under the lock; a failing database is a miss, never an error."""
        with self._lock:
            db = self._connection()
            try:
                return None if db is None else work(db)
            except sqlite3.Error as exc:
                self._failed(exc)

    def _failed(self, exc):
        """Set a corrupt or foreign file aside for a new one; otherwise roll back, warn once."""
        if _corrupt(exc):
            aside = self.file.with_name(f"{self.file.name}.corrupt-{time.time_ns()}")
            if self._db is not None:
                self._db.close()
            self._db = None
            warnings.warn(f"The activation cache {str(self.file)!r} is not a database this "
                          f"package can read ({exc}); it was moved to {aside.name} and is "
                          "never served.", RuntimeWarning, stacklevel=5)
            try:
                for suffix in ("", "-wal", "-shm"):
                    if suffix == "" or os.path.exists(f"{self.file}{suffix}"):
                        os.replace(f"{self.file}{suffix}", f"{aside}{suffix}")
                self._db = self._open()
                return
            except (OSError, sqlite3.Error) as again:
                exc = again
        try:  # read-only, disk full, locked for longer than the timeout
            if self._db is not None and self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        if str(exc) not in self._warned:
            self._warned.add(str(exc))
            warnings.warn(f"Could not use the activation cache {str(self.path)!r} ({exc}); "
                          "features are computed and returned but not cached on disk.",
                          RuntimeWarning, stacklevel=5)

    def lookup(self, fingerprint, layer_keys, digests):
        """Cached rows (``None`` where missing or unreadable) per layer key."""
        layers = list(layer_keys)
        found = (self._front.lookup(fingerprint, layers, digests) if self._front is not None
                 else {key: [None] * len(digests) for key in layers})
        position = {}  # digest -> the rows (a row may come twice) some layer missed
        for i, d in enumerate(digests):
            if any(found[k][i] is None for k in layers):
                position.setdefault(d, []).append(i)
        wanted = list(position)

        def read(db):
            got = []
            for lo in range(0, len(wanted), _CHUNK):
                rows = wanted[lo:lo + _CHUNK]
                got += db.execute(
                    "SELECT layer, row, dtype, width, value FROM rows WHERE model = ? AND "
                    f"layer IN ({','.join('?' * len(layers))}) "
                    f"AND row IN ({','.join('?' * len(rows))})",
                    [fingerprint, *layers, *rows]).fetchall()
            return got

        served = []
        for layer, row, dtype, width, value in (self._run(read) or ()) if wanted else ():
            missing = [i for i in position[row] if found[layer][i] is None]
            if missing and dtype == _FLOAT32 and isinstance(value, bytes) and len(value) == 4 * width:
                for i in missing:
                    found[layer][i] = np.frombuffer(value, dtype=np.float32)
                served.append((layer, row, value))
        if self._front is not None:
            self._front._insert(fingerprint, served)
        return found

    def store(self, fingerprint, features, digests):
        """Store each row of each layer, in one transaction (kept rows stay as they are)."""
        entries = [(layer, digest, row.tobytes()) for layer, matrix in features.items()
                   for digest, row in zip(digests, np.ascontiguousarray(matrix, dtype=np.float32))]
        if self._front is not None:
            self._front._insert(fingerprint, entries)
        records = [(fingerprint, layer, digest, _FLOAT32, len(value) // 4, value)
                   for layer, digest, value in entries]

        def write(db):
            db.execute("BEGIN IMMEDIATE")
            # a row already there stays (a value served earlier is served again),
            # unless its dtype or width is not what was computed: never ours, replaced
            db.executemany(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET "
                "dtype = excluded.dtype, width = excluded.width, value = excluded.value "
                "WHERE dtype != excluded.dtype OR width != excluded.width "
                "OR length(value) != 4 * excluded.width", records)
            db.execute("COMMIT")

        self._run(write)


def make_cache(cache):
    """Resolve the transformer's ``cache`` parameter to a cache object or None.

    A directory path gives a new :class:`DiskCache` on each call (nothing is
    held for a path in between); pass a ``DiskCache`` object to share its
    in-memory front and model memo across calls and clones.
    """
    if cache is None or hasattr(cache, "lookup") and hasattr(cache, "store"):
        return cache
    if isinstance(cache, str) and cache == "memory":
        return _DEFAULT
    if isinstance(cache, (str, os.PathLike)) and os.fspath(cache).strip():
        return DiskCache(cache)
    raise ValueError("cache must be 'memory', a directory path (not ''), a MemoryCache/"
                     f"DiskCache or None; got cache={cache!r}.")
