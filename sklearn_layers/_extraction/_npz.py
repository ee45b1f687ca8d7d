"""Read and write one disk-cache entry: an uncompressed ``.npz`` of 1-D float32 rows.

A cache directory may be shared, so anything can sit at an entry's path: a
FIFO, a plain ``.npy``, a zip whose headers claim petabytes, a pickle. The
reader opens regular files only, never unpickles, and checks each member's
header against the bytes actually present before it reads (and so allocates)
anything. Whatever fails a check is a miss, rewritten by the next store.
"""

import os
import stat
import tempfile
import zipfile

import numpy as np

_FLOAT32 = np.dtype("<f4")


class _Foreign(Exception):
    """The file is not an entry this package wrote."""


def _open_regular(path):
    """Open ``path`` for reading if it is a regular file, else return None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError, PermissionError, IsADirectoryError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read_member(archive, info):
    if info.compress_type != zipfile.ZIP_STORED or not info.filename.endswith(".npy"):
        raise _Foreign(info.filename)
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise _Foreign(info.filename)
        if dtype != _FLOAT32 or len(shape) != 1 or fortran:
            raise _Foreign(info.filename)
        expected = shape[0] * _FLOAT32.itemsize
        if expected != info.file_size - member.tell():
            raise _Foreign(info.filename)  # the header lies about the data
        data = member.read(expected)
    if len(data) != expected:
        raise _Foreign(info.filename)
    return np.frombuffer(data, dtype=_FLOAT32)


def read_entry(path):
    """The rows stored in the entry at ``path`` (member name -> 1-D float32), or None.

    None means a miss: no file, not a regular file, or not an entry of ours.
    """
    handle = _open_regular(path)
    if handle is None:
        return None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            with zipfile.ZipFile(handle) as archive:
                infos = archive.infolist()
                if sum(info.file_size for info in infos) > size:
                    return None  # the directory claims more than the file holds
                return {
                    info.filename.removesuffix(".npy"): _read_member(archive, info)
                    for info in infos
                }
        except (_Foreign, OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile,
                zipfile.LargeZipFile, NotImplementedError):
            return None


def write_entry(path, entry):
    """Write ``entry`` (name -> 1-D float32) to ``path`` atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **entry)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
