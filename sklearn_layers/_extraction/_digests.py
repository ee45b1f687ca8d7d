"""Row digests: what the activation cache keys an input row on.

A row's digest covers its bytes and everything needed to read them back the
same way: the dtype and per-row shape of each array, and the key under which
each array reaches the model (``model(x=..., offset=...)`` and
``model(x=..., scale=...)`` never share an entry). Text rows are keyed by the
string and the tokenizer's full name (:func:`._identity.tokenizer_name`).

xxh3-128 reads several GB/s, so hashing every row costs a few percent of a
forward pass. It is not a cryptographic hash: collisions are a concern only
against someone who can already write to the cache.
"""

import os
import stat

import numpy as np
import torch
import xxhash


def digest(*chunks):
    """A 128-bit digest of byte strings or contiguous buffers."""
    h = xxhash.xxh3_128()
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


def _row_bytes(a):
    """``(dtype name, per-row shape, (n, row_nbytes) uint8 array)`` of one array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().contiguous()
        n, shape, dtype = a.shape[0], tuple(a.shape[1:]), str(a.dtype)
        # numpy has no bfloat16 or float8: read any dtype as its bytes
        flat = a.reshape(n, -1).view(torch.uint8).numpy() if a.numel() else np.empty((n, 0), np.uint8)
        return dtype, shape, flat
    a = np.ascontiguousarray(a)
    if a.dtype.hasobject:
        raise TypeError("Object arrays cannot be hashed for the cache; pass numeric arrays.")
    n = a.shape[0]
    flat = a.reshape(n, -1).view(np.uint8) if a.size else np.empty((n, 0), np.uint8)
    return a.dtype.str, a.shape[1:], flat


def row_digests(arrays, names=None):
    """One digest per row over the bytes, dtypes, shapes and names of ``arrays``.

    Parameters
    ----------
    arrays : list of ndarray or torch.Tensor
        Arrays sharing axis 0.
    names : list of str, default=None
        The keyword under which each array reaches the model (dict inputs).

    Returns
    -------
    digests : list of bytes
    """
    parts = [_row_bytes(a) for a in arrays]
    header = repr([(names[i] if names else i, dtype, shape) for i, (dtype, shape, _) in enumerate(parts)])
    n = parts[0][2].shape[0]
    rows = [flat for _, _, flat in parts]
    head = header.encode()
    return [digest(head, *(r[i] for r in rows)) for i in range(n)]


def text_digests(tokenizer_name, texts):
    """One digest per string, under a tokenizer's name."""
    head = tokenizer_name.encode()
    return [digest(head, b"\0", t.encode("utf-8")) for t in texts]


def item_digest(item):
    """Bytes identifying one raw item (an image, a file, an array), or None.

    A PIL image is read by mode, size and pixels (a palette image's palette
    and transparency too); a string or path by itself
    (``preprocess`` receives it, and may read more than the file: its name,
    its neighbours) and, when it names a regular file, by that file's content
    too (so a file rewritten in place is another row); arrays and tensors by
    dtype, shape and bytes; ``bytes`` as they are. Other objects have no
    digest: input holding them is not cached.
    """
    if is_pil_image(item):
        # a palette image's bytes are indices: its colours are in the palette
        palette = bytes(item.getpalette() or ()) if item.mode in ("P", "PA") else b""
        mode = getattr(item.palette, "mode", None) if palette else None
        head = f"pil|{item.mode}|{item.size}|{mode}|{item.info.get('transparency')!r}|{len(palette)}|"
        return digest(head.encode(), palette, item.tobytes())
    if isinstance(item, (str, os.PathLike)):
        return _path_digest(item)
    if isinstance(item, (np.ndarray, torch.Tensor)):
        batch = item[None] if isinstance(item, np.ndarray) else item.unsqueeze(0)
        dtype, shape, flat = _row_bytes(batch)
        return digest(f"array|{dtype}|{shape}|".encode(), flat[0])
    if isinstance(item, bytes):
        return digest(b"bytes|", item)
    return None


def _path_digest(item):
    """A string or path-like, with the content of the regular file it names, if any.

    Text that names no file (a sentence for a featuriser, a directory, a name
    with a NUL) is keyed by itself alone, and is never opened: only regular
    files are read, so a FIFO is never waited on.
    """
    if isinstance(item, str):
        kind, name = "str", item.encode("utf-8", "surrogatepass")
    else:
        kind = f"path:{type(item).__module__}.{type(item).__qualname__}"
        name = os.fsencode(item)
    head = f"{kind}|{len(name)}|".encode()
    return digest(head, name, _file_content(item))


def _file_content(path):
    """``b"file|"`` and the digest of a regular file's bytes, else ``b"-"``."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b"-"
        h = xxhash.xxh3_128()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                h.update(block)
    except (OSError, ValueError):  # missing, unreadable, or no valid path
        return b"-"
    return b"file|" + h.digest()


def is_pil_image(obj):
    """Whether ``obj`` is a PIL image (without importing PIL)."""
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "tobytes")


def digestible(item):
    """Whether :func:`item_digest` can name ``item`` (without reading it)."""
    return is_pil_image(item) or isinstance(
        item, (str, os.PathLike, np.ndarray, torch.Tensor, bytes)
    )
