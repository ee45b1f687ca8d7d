"""Input adapters: turn what the user passes into batches the model can take.

Every adapter yields :class:`Batch` objects holding the positional and keyword
tensors for ``model(*args, **kwargs)``, the padding mask (if any) for pooling,
and one digest per row for the activation cache.
"""

import numbers
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
import xxhash
from sklearn.utils.validation import check_array

def _digest(*chunks):
    """A 128-bit digest of byte strings or contiguous buffers.

    xxh3-128 runs at several GB/s: hashing every input row on every call costs
    a few percent of a forward pass, where blake2b cost a quarter of a cached
    grid search. It is not a cryptographic hash; collisions are only a concern
    against someone who can already write to the cache.
    """
    h = xxhash.xxh3_128()
    for chunk in chunks:
        h.update(chunk)
    return h.digest()


def _row_digests(arrays):
    """One digest per row over the bytes (and dtype and shape) of each array.

    Tensors are read on the CPU; everything else through ``np.asarray``.
    """
    arrays = [
        np.ascontiguousarray(a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a)
        for a in arrays
    ]
    header = repr([(a.dtype.str, a.shape[1:]) for a in arrays]).encode()
    n = arrays[0].shape[0]
    if any(a.dtype.hasobject for a in arrays):
        raise TypeError("Object arrays cannot be hashed for the cache; pass numeric arrays.")
    rows = [a.reshape(n, -1).view(np.uint8) if a.size else a.reshape(n, 0) for a in arrays]
    return [_digest(header, *(r[i] for r in rows)) for i in range(n)]


@dataclass
class Batch:
    """One batch of model inputs.

    Attributes
    ----------
    args : tuple of torch.Tensor
        Positional inputs, batched along axis 0.
    kwargs : dict of str -> torch.Tensor
        Keyword inputs, batched along axis 0.
    mask : torch.Tensor or None
        Padding mask ``(batch, tokens)`` handed to pooling.
    n : int
        Number of rows.
    cast_args : bool
        Whether the positional inputs take the model's floating dtype.
    digests : list of bytes
        One digest per row (what the cache keys rows on), computed on first
        access only: without a cache no row is ever hashed.
    """

    args: tuple
    kwargs: dict
    mask: object
    n: int
    cast_args: bool = False
    digest_rows: object = field(default=None, repr=False)
    _digests: list = field(default=None, repr=False)

    @property
    def digests(self):
        if self._digests is None:
            self._digests = self.digest_rows()
        return self._digests

    def __len__(self):
        return self.n

    def select(self, rows):
        """The sub-batch of the given row positions."""
        index = torch.as_tensor(rows, dtype=torch.long)
        return Batch(
            args=tuple(_take(a, index) for a in self.args),
            kwargs={k: _take(v, index) for k, v in self.kwargs.items()},
            mask=None if self.mask is None else self.mask[index],
            n=len(rows),
            cast_args=self.cast_args,
            digest_rows=lambda: [self.digests[i] for i in rows],
        )

    def to(self, device, float_dtype):
        """Move tensors to ``device``; floating tensors take ``float_dtype``."""

        def move(t, cast=False):
            if not isinstance(t, torch.Tensor):
                return t
            if cast or t.is_floating_point():
                moved = t.to(device=device, dtype=float_dtype)
                if _may_overflow(t.dtype, float_dtype) and not bool(
                    torch.isfinite(moved).all()
                ):
                    raise ValueError(
                        f"Input values overflow the model's dtype {float_dtype} (their "
                        f"magnitude exceeds {torch.finfo(float_dtype).max:.3g}); "
                        "rescale X."
                    )
                return moved
            return t.to(device=device)

        return Batch(
            args=tuple(move(a, self.cast_args) for a in self.args),
            kwargs={k: move(v) for k, v in self.kwargs.items()},
            mask=None if self.mask is None else self.mask.to(device),
            n=self.n,
            digest_rows=lambda: self.digests,
        )


def _may_overflow(source, target):
    """Whether finite ``source`` values can become infinite as ``target``."""
    if source == target or source == torch.bool:
        return False
    info = torch.finfo(source) if source.is_floating_point else torch.iinfo(source)
    return float(info.max) > float(torch.finfo(target).max)


def _take(t, index):
    if isinstance(t, torch.Tensor):
        return t.index_select(0, index.to(t.device))
    return t


def _as_tensor(a):
    if isinstance(a, torch.Tensor):
        return a
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy needs a writeable buffer
        a = a.copy()
    return torch.from_numpy(a)


class ArrayInput:
    """A numeric array or tensor whose axis 0 is the sample axis."""

    kind = "array"

    def __init__(self, X):
        self.X = X

    def __len__(self):
        return self.X.shape[0]

    @property
    def sample_shape(self):
        return tuple(self.X.shape[1:])

    def batches(self, batch_size):
        for start in range(0, len(self), batch_size):
            part = self.X[start : start + batch_size]
            is_tensor = isinstance(part, torch.Tensor)
            yield Batch(
                args=(part if is_tensor else _as_tensor(part),),
                kwargs={},
                mask=None,
                n=len(part),
                # numeric arrays (tabular or images) always feed a float network;
                # integer tensors are kept as they are (token ids)
                cast_args=not is_tensor,
                digest_rows=partial(_row_digests, [part]),
            )


class DictInput:
    """A dict of arrays/tensors with a common sample axis: ``model(**batch)``."""

    kind = "dict"

    def __init__(self, X):
        self.X = X
        self._n = _common_length(X)

    def __len__(self):
        return self._n

    @property
    def sample_shape(self):
        return None

    def batches(self, batch_size):
        keys = sorted(self.X)
        for start in range(0, len(self), batch_size):
            parts = {k: self.X[k][start : start + batch_size] for k in keys}
            kwargs = {k: _as_tensor(v) for k, v in parts.items()}
            yield Batch(
                args=(),
                kwargs=kwargs,
                mask=kwargs.get("attention_mask"),
                n=len(next(iter(parts.values()))),
                digest_rows=partial(_row_digests, list(parts.values())),
            )


class TextInput:
    """Strings tokenised batch by batch; the attention mask reaches pooling."""

    kind = "text"

    def __init__(self, texts, tokenizer, max_length=None):
        self.texts = texts
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __len__(self):
        return len(self.texts)

    @property
    def sample_shape(self):
        return None

    def _identity(self):
        """Everything about the tokenisation that can change a row's features."""
        tok = self.tokenizer
        init = getattr(tok, "init_kwargs", {})
        described = {k: v for k, v in init.items() if isinstance(v, (str, int, float, bool))}
        return repr(
            (
                f"{type(tok).__module__}.{type(tok).__qualname__}",
                getattr(tok, "name_or_path", None),
                _safe_len(tok),
                self.max_length,
                sorted(described.items()),
            )
        ).encode()

    def batches(self, batch_size):
        name = self._identity()
        for start in range(0, len(self), batch_size):
            part = [str(t) for t in self.texts[start : start + batch_size]]
            encoded = self.tokenizer(
                part,
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            kwargs = dict(encoded)
            yield Batch(
                args=(),
                kwargs=kwargs,
                mask=kwargs.get("attention_mask"),
                n=len(part),
                digest_rows=partial(_text_digests, name, part),
            )


class DatasetInput:
    """A map-style ``torch.utils.data.Dataset``; items are ``x``, ``(x, y, ...)`` or dicts."""

    kind = "dataset"

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    @property
    def sample_shape(self):
        return None

    def batches(self, batch_size):
        from torch.utils.data import default_collate

        for start in range(0, len(self), batch_size):
            items = [
                _first_input(self.dataset[i])
                for i in range(start, min(start + batch_size, len(self)))
            ]
            collated = default_collate(items)
            if isinstance(collated, dict):
                kwargs = {k: _as_tensor(v) for k, v in collated.items()}
                yield Batch(
                    args=(),
                    kwargs=kwargs,
                    mask=kwargs.get("attention_mask"),
                    n=len(items),
                    digest_rows=partial(_row_digests, [kwargs[k] for k in sorted(kwargs)]),
                )
            else:
                tensor = _as_tensor(collated)
                _check_finite_tensor(tensor, "Dataset items")
                yield Batch(
                    args=(tensor,), kwargs={}, mask=None, n=len(items),
                    digest_rows=partial(_row_digests, [tensor]),
                )


def _text_digests(identity, texts):
    return [_digest(identity, t.encode("utf-8")) for t in texts]


def _safe_len(obj):
    try:
        return len(obj)
    except TypeError:
        return None


def _first_input(item):
    if isinstance(item, (tuple, list)):
        return item[0]
    return item


def _common_length(d):
    if not d:
        raise ValueError("A dict input must hold at least one array.")
    lengths = {k: len(v) for k, v in d.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"All arrays of a dict input must have the same length; got {lengths}.")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError("Found a dict input with 0 samples; at least 1 is required.")
    return n


def _check_finite_tensor(t, what):
    if t.is_floating_point() or t.is_complex():
        if t.is_complex():
            raise ValueError(f"{what} are complex; complex data is not supported.")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{what} contain NaN or infinity.")


def _is_text(X):
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(t, str) for t in X)


def check_tensor(X):
    """Validate a torch tensor input: at least 2-D, non-empty, finite, real."""
    if X.ndim < 2:
        raise ValueError(
            f"Expected a tensor with a sample axis and at least one feature axis, got "
            f"shape {tuple(X.shape)}. Reshape a single feature with X.reshape(-1, 1)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"Found a tensor with 0 samples (shape {tuple(X.shape)}).")
    if X.numel() == 0:
        raise ValueError(f"Found a tensor with no features (shape {tuple(X.shape)}).")
    _check_finite_tensor(X, "Input values")
    return X


def make_input(X, *, tokenizer=None, max_length=None, validate_array=None):
    """Wrap ``X`` in the matching adapter.

    Parameters
    ----------
    X : array-like, torch.Tensor, DataFrame, dict, Dataset or list of str
        The input.
    tokenizer : callable, default=None
        A Hugging Face tokenizer; required for lists of strings.
    max_length : int, default=None
        Truncation length for the tokenizer.
    validate_array : callable, default=None
        ``validate_array(X) -> ndarray`` used for array-likes (the transformer
        passes its ``validate_data`` here so feature names are tracked).

    Returns
    -------
    adapter : ArrayInput, DictInput, TextInput or DatasetInput
    """
    from scipy import sparse
    from torch.utils.data import Dataset

    if sparse.issparse(X):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required: a network "
            "takes dense tensors. Use X.toarray() to convert it."
        )
    if isinstance(X, torch.Tensor):
        return ArrayInput(check_tensor(X))
    if isinstance(X, dict):
        return DictInput(X)
    if isinstance(X, Dataset):
        if len(X) == 0:
            raise ValueError("Found a Dataset with 0 samples; at least 1 is required.")
        return DatasetInput(X)
    if tokenizer is not None or _is_text(X):
        if tokenizer is None:
            raise ValueError(
                "Got a list of strings but no tokenizer; pass tokenizer=... (e.g. "
                "transformers.AutoTokenizer.from_pretrained(path))."
            )
        texts = list(X)
        if not texts:
            raise ValueError("Found an empty list of texts; at least 1 is required.")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("With a tokenizer, X must be a list of strings.")
        return TextInput(texts, tokenizer, max_length=max_length)
    if isinstance(X, numbers.Number) or isinstance(X, str):
        raise ValueError(f"Expected an array-like of samples, got a scalar {X!r}.")
    if validate_array is None:
        validate_array = lambda a: check_array(a, allow_nd=True)  # noqa: E731
    return ArrayInput(validate_array(X))
