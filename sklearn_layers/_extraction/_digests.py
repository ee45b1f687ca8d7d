"""Row digests (xxh3-128): what the activation cache keys an input row on. Not a
cryptographic hash: collisions matter only against someone who can already write
the cache."""

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
    if isinstance(a, torch.Tensor):  # numpy has no bfloat16 nor float8: read the bytes
        a, n = a.detach().cpu().contiguous(), a.shape[0]
        flat = a.reshape(n, -1).view(torch.uint8).numpy() if a.numel() else np.empty((n, 0), np.uint8)
        return str(a.dtype), tuple(a.shape[1:]), flat
    a = np.ascontiguousarray(a)
    if a.dtype.hasobject:
        raise TypeError("Object arrays cannot be hashed for the cache; pass numeric arrays.")
    flat = a.reshape(a.shape[0], -1).view(np.uint8) if a.size else np.empty((a.shape[0], 0), np.uint8)
    return a.dtype.str, a.shape[1:], flat


def row_digests(arrays, names=None):
    """One digest per row over the bytes, dtypes, per-row shapes and names (the keyword
    under which each reaches the model) of ``arrays``, which share axis 0."""
    parts = [_row_bytes(a) for a in arrays]
    head = repr([(names[i] if names else i, dtype, shape) for i, (dtype, shape, _) in enumerate(parts)]).encode()
    rows = [flat for _, _, flat in parts]
    return [digest(head, *(r[i] for r in rows)) for i in range(rows[0].shape[0])]


def text_digests(tokenizer_name, texts):
    """One digest per string, under a tokenizer's name."""
    head = tokenizer_name.encode()
    return [digest(head, b"\0", t.encode("utf-8")) for t in texts]


def item_digest(item):
    """Bytes identifying one raw item, or None (then the input is not cached): a PIL
    image by mode, size, pixels and palette; a string or path by itself and the
    content of the regular file it names (``preprocess`` may read its name too);
    an array or tensor by dtype, shape and bytes; ``bytes`` as they are."""
    if is_pil_image(item):
        palette = bytes(item.getpalette() or ()) if item.mode in ("P", "PA") else b""
        mode = getattr(item.palette, "mode", None) if palette else None
        head = f"pil|{item.mode}|{item.size}|{mode}|{item.info.get('transparency')!r}|{len(palette)}|"
        return digest(head.encode(), palette, item.tobytes())
    if isinstance(item, (str, os.PathLike)):
        name = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else os.fsencode(item)
        kind = "str" if isinstance(item, str) else f"path:{type(item).__module__}.{type(item).__qualname__}"
        return digest(f"{kind}|{len(name)}|".encode(), name, _file_content(item))
    if isinstance(item, (np.ndarray, torch.Tensor)):
        dtype, shape, flat = _row_bytes(item[None])
        return digest(f"array|{dtype}|{shape}|".encode(), flat[0])
    if isinstance(item, bytes):
        return digest(b"bytes|", item)
    return None


def _file_content(path):
    """A digest of a regular file's bytes, else ``b"-"`` (a FIFO is never opened)."""
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
    return is_pil_image(item) or isinstance(item, (str, os.PathLike, np.ndarray, torch.Tensor, bytes))
