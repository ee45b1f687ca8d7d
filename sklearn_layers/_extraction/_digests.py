"""Row digests (xxh3-128): what the activation cache keys an input row on. Not a
cryptographic hash: collisions matter only against someone who can already write
the cache."""

import numbers
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
        a, n = a.detach().cpu().resolve_conj().resolve_neg().contiguous(), a.shape[0]
        flat = a.reshape(n, -1).view(torch.uint8).numpy() if a.numel() else np.empty((n, 0), np.uint8)
        return str(a.dtype), tuple(a.shape[1:]), flat
    a = np.ascontiguousarray(a)
    if a.dtype.hasobject:
        raise TypeError("Object arrays cannot be hashed for the cache; pass numeric arrays.")
    flat = a.reshape(a.shape[0], -1).view(np.uint8) if a.size else np.empty((a.shape[0], 0), np.uint8)
    return _dtype_name(a.dtype), a.shape[1:], flat


def _dtype_name(dtype):
    """``dtype.str``, with the field names, formats and offsets of a structured dtype
    (its ``str`` is ``'|V<itemsize>'`` whatever its fields)."""
    if dtype.names is None:
        return dtype.str
    return f"{dtype.str}{dtype.descr!r}"


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
    image by mode, size, pixels, palette (with its alpha), EXIF and ``info``; a string
    or path by itself and the content of the regular file it names (``preprocess`` may
    read its name too); an array or tensor by dtype, shape and bytes; ``bytes`` as
    they are."""
    if is_pil_image(item):
        return _pil_digest(item)
    if isinstance(item, (str, os.PathLike)):
        name = item.encode("utf-8", "surrogatepass") if isinstance(item, str) else os.fsencode(item)
        kind = "str" if isinstance(item, str) else f"path:{type(item).__module__}.{type(item).__qualname__}"
        return digest(f"{kind}|{len(name)}|".encode(), name, _file_content(item))
    if _digestible_array(item):
        dtype, shape, flat = _row_bytes(item[None])
        return digest(f"array|{dtype}|{shape}|".encode(), flat[0])
    if isinstance(item, bytes):
        return digest(b"bytes|", item)
    return None


def _pil_digest(image):
    """A PIL image by mode, size, pixels, palette, EXIF and ``info`` (loading it)."""
    pixels = image.tobytes()
    palette = b""
    if image.mode in ("P", "PA"):  # in its own mode: getpalette() drops the alpha of RGBA
        palette = bytes(image.getpalette(rawmode=None) or ())
    mode = getattr(image.palette, "mode", None) if palette else None
    info = repr(_plain(image.info)).encode()
    exif = _exif_bytes(image)
    head = f"pil|{image.mode}|{image.size}|{mode}|{len(palette)}|{len(info)}|{len(exif)}|"
    return digest(head.encode(), palette, info, exif, pixels)


def _exif_bytes(image):
    """The image's EXIF as ``getexif()`` gives it (edits included), ``b"-"`` if PIL
    cannot read or write it. An EXIF that PIL has not read yet is read into a scratch
    copy: the image's own is left as it was."""
    memo = getattr(image, "_exif", None)
    scratch = memo is not None and not getattr(memo, "_loaded", True)
    try:
        if scratch:
            image._exif = None
        return b"exif|" + image.getexif().tobytes()
    except Exception:  # noqa: BLE001 -- PIL raises many kinds on odd tags
        return b"-"
    finally:
        if memo is None or scratch:
            image._exif = memo


_PLAIN = (str, bytes, bool, int, float, type(None))


def _plain(value, depth=0):
    """``value`` as plain data whose ``repr`` is the same in every process: plain
    scalars, bytes, numbers and containers of them by value, anything else by its
    type's name (never a ``repr`` that could hold an address)."""
    if type(value) in _PLAIN:
        return value
    if isinstance(value, str):  # a subclass (numpy.str_) by its value
        return ("str", str(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, numbers.Integral):  # numpy integers
        return ("int", int(value))
    if isinstance(value, numbers.Rational):  # PIL's IFDRational (dpi, resolution)
        fraction = (value.numerator, value.denominator)
        if all(type(part) is int for part in fraction):
            return ("rational", *fraction)
    if isinstance(value, numbers.Real):
        return ("real", float(value))
    if depth < 8 and type(value) in (tuple, list):
        return (type(value).__name__, *(_plain(v, depth + 1) for v in value))
    if depth < 8 and type(value) is dict:
        items = [(repr(_plain(k, depth + 1)), _plain(v, depth + 1))
                 for k, v in value.items()]
        return ("dict", *sorted(items, key=lambda item: item[0]))
    if depth < 8 and type(value) in (set, frozenset):
        return ("set", *sorted(repr(_plain(v, depth + 1)) for v in value))
    return ("type", f"{type(value).__module__}.{type(value).__qualname__}")


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
    return (is_pil_image(item) or isinstance(item, (str, os.PathLike, bytes))
            or _digestible_array(item))


def _digestible_array(item):
    """Whether ``item`` is an array whose bytes, dtype and shape are all it holds: a
    plain ``ndarray`` (not of objects) or a dense ``Tensor`` or ``Parameter``; a subclass
    (a masked array) may hold more than its bytes."""
    if type(item) is np.ndarray:
        return not item.dtype.hasobject
    return type(item) in (torch.Tensor, torch.nn.Parameter) and item.layout == torch.strided
