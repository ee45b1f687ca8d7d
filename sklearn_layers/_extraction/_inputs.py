"""Input adapters: turn what the user passes into batches the model can take.

An adapter splits its rows into :class:`Chunk` objects (consecutive rows).
A chunk gives one digest per row for the activation cache *before* anything is
prepared for the model, and builds model :class:`Batch` objects only for the
rows that must go through the network: text that the cache already holds is
never tokenised. Text chunks order the rows they send to the network by length,
so each batch pads little; outputs are written back in the caller's order.
"""

import numbers
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils.validation import check_array

from ._digests import _is_pil_image, digest, digestible, item_digest, row_digests, text_digests
from ._identity import preprocess_name, tokenizer_name

_ROWS_PER_CHUNK = 32  # batches per chunk of an in-memory array


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
    """

    args: tuple
    kwargs: dict
    mask: object
    n: int
    cast_args: bool = False

    def __len__(self):
        return self.n

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
        )


def _may_overflow(source, target):
    """Whether finite ``source`` values can become infinite as ``target``."""
    if source == target or source == torch.bool:
        return False
    info = torch.finfo(source) if source.is_floating_point else torch.iinfo(source)
    return float(info.max) > float(torch.finfo(target).max)


class Chunk(ABC):
    """Consecutive rows ``start .. start + n`` of an input.

    Subclasses build model batches from positions within the chunk.
    """

    def __init__(self, start, n):
        self.start = start
        self.n = n
        self._digests = None

    @property
    def digests(self):
        """One digest per row, computed on first access (never without a cache)."""
        if self._digests is None:
            self._digests = self._digest_rows()
        return self._digests

    def order(self, positions):
        """The order in which rows go through the network."""
        return positions

    @abstractmethod
    def _digest_rows(self):
        """One digest per row of the chunk."""

    @abstractmethod
    def build(self, positions):
        """The model batch of the rows at ``positions`` (within the chunk)."""


def _as_tensor(a):
    if isinstance(a, torch.Tensor):
        return a
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy needs a writeable buffer
        a = a.copy()
    return torch.from_numpy(a)


def _take(a, positions):
    if isinstance(a, torch.Tensor):
        return a.index_select(0, torch.as_tensor(positions, dtype=torch.long, device=a.device))
    return a[np.asarray(positions)]


class _ArrayChunk(Chunk):
    def __init__(self, start, part, cast):
        super().__init__(start, part.shape[0])
        self.part = part
        self.cast = cast

    def _digest_rows(self):
        return row_digests([self.part])

    def build(self, positions):
        rows = self.part if len(positions) == self.n else _take(self.part, positions)
        return Batch(args=(_as_tensor(rows),), kwargs={}, mask=None, n=len(positions),
                     cast_args=self.cast)


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

    def chunks(self, batch_size):
        # numeric arrays (tabular or images) always feed a float network;
        # integer tensors are kept as they are (token ids)
        cast = not isinstance(self.X, torch.Tensor)
        step = batch_size * _ROWS_PER_CHUNK
        for start in range(0, len(self), step):
            yield _ArrayChunk(start, self.X[start : start + step], cast)


class _DictChunk(Chunk):
    def __init__(self, start, parts):
        super().__init__(start, len(next(iter(parts.values()))))
        self.parts = parts

    def _digest_rows(self):
        keys = list(self.parts)
        return row_digests([self.parts[k] for k in keys], names=keys)

    def build(self, positions):
        whole = len(positions) == self.n
        kwargs = {
            k: _as_tensor(v if whole else _take(v, positions)) for k, v in self.parts.items()
        }
        return Batch(args=(), kwargs=kwargs, mask=kwargs.get("attention_mask"),
                     n=len(positions))


class DictInput:
    """A mapping of arrays/tensors with a common sample axis: ``model(**batch)``."""

    kind = "dict"

    def __init__(self, X):
        self.X = {
            k: X[k] if isinstance(X[k], torch.Tensor) else np.asarray(X[k]) for k in sorted(X)
        }
        self._n = _common_length(self.X)
        for key, value in self.X.items():
            _check_finite(value, f"Input {key!r}")

    def __len__(self):
        return self._n

    @property
    def sample_shape(self):
        return None

    def chunks(self, batch_size):
        step = batch_size * _ROWS_PER_CHUNK
        for start in range(0, len(self), step):
            yield _DictChunk(start, {k: v[start : start + step] for k, v in self.X.items()})


class _TextChunk(Chunk):
    def __init__(self, start, texts, tokenizer, max_length, name):
        super().__init__(start, len(texts))
        self.texts = texts
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.name = name

    def _digest_rows(self):
        if self.name is None:
            raise RuntimeError("an unnamed tokenizer's rows are never looked up")
        return text_digests(self.name, self.texts)

    def order(self, positions):
        # longest first, as sentence-transformers does: batches pad little, and
        # the largest batch comes first, so memory peaks early if at all
        return sorted(positions, key=lambda i: -len(self.texts[i]))

    def build(self, positions):
        encoded = self.tokenizer(
            [self.texts[i] for i in positions],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        kwargs = dict(encoded)
        return Batch(args=(), kwargs=kwargs, mask=kwargs.get("attention_mask"),
                     n=len(positions))


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

    @property
    def cacheable(self):
        """Whether the tokenizer has a stable name (else rows are not cached)."""
        return self._name() is not None

    def _name(self):
        if not hasattr(self, "_tokenizer_name"):
            self._tokenizer_name = tokenizer_name(self.tokenizer, self.max_length)
        return self._tokenizer_name

    def chunks(self, batch_size):
        yield _TextChunk(0, self.texts, self.tokenizer, self.max_length, self._name())


class _ItemChunk(Chunk):
    def __init__(self, start, items, preprocess, name):
        super().__init__(start, len(items))
        self.items = items
        self.preprocess = preprocess
        self.name = name

    def _digest_rows(self):
        head = self.name.encode()
        return [digest(head, b"\0", item_digest(item)) for item in self.items]

    def build(self, positions):
        rows = [self.items[i] for i in positions]
        out = self.preprocess(rows)
        if isinstance(out, Mapping):
            kwargs = {k: _as_tensor(out[k]) for k in out}
            args = ()
        else:
            args, kwargs = (_as_tensor(out),), {}
        tensors = [*args, *kwargs.values()]
        if not tensors or any(
            not isinstance(t, torch.Tensor) or t.ndim == 0 or t.shape[0] != len(rows)
            for t in tensors
        ):
            shapes = [tuple(getattr(t, "shape", ())) for t in tensors]
            raise ValueError(
                f"preprocess={self.preprocess!r} must return a tensor (or a mapping of "
                f"tensors) with one row per item: it got {len(rows)} items and "
                f"returned shapes {shapes}."
            )
        for key, t in (*enumerate(args), *kwargs.items()):
            _check_tensor_values(t, f"preprocess output ({key})")
        return Batch(args=args, kwargs=kwargs, mask=kwargs.get("attention_mask"),
                     n=len(rows), cast_args=bool(args) and args[0].is_floating_point())


class ItemInput:
    """Raw items (images, file paths, arrays of any size) turned into batches by ``preprocess``."""

    kind = "items"

    def __init__(self, items, preprocess):
        self.items = items
        self.preprocess = preprocess

    def __len__(self):
        return len(self.items)

    @property
    def sample_shape(self):
        return None

    def _name(self):
        if not hasattr(self, "_preprocess_name"):
            self._preprocess_name = preprocess_name(self.preprocess)
        return self._preprocess_name

    @property
    def cacheable(self):
        """Whether the preprocess has a stable name and every item a digest."""
        return self._name() is not None and all(map(digestible, self.items))

    def chunks(self, batch_size):
        name = self._name()
        for start in range(0, len(self), batch_size):
            yield _ItemChunk(start, self.items[start : start + batch_size], self.preprocess,
                             name)


def _items(X):
    """``X`` as a list of items: a sequence as it is, an array by its rows."""
    if isinstance(X, (list, tuple)):
        return list(X)
    if isinstance(X, (np.ndarray, torch.Tensor)):
        return [X[i] for i in range(len(X))]
    if hasattr(X, "__len__") and hasattr(X, "__getitem__"):
        return [X[i] for i in range(len(X))]
    raise TypeError(
        f"With preprocess=, X must be a sequence of items (images, file paths, "
        f"arrays); got {type(X).__name__}."
    )


def _needs_preprocess(X):
    """A reason why ``X`` cannot be read without ``preprocess=``, or None."""
    if not isinstance(X, (list, tuple)) or not X:
        return None
    first = X[0]
    if _is_pil_image(first):
        return "X holds PIL images"
    if isinstance(first, np.ndarray) and any(
        not isinstance(x, np.ndarray) or x.shape != first.shape for x in X
    ):
        return "X holds arrays of different shapes"
    return None


class _CollatedChunk(Chunk):
    """Rows already collated into tensors (a Dataset slice or a DataLoader batch)."""

    def __init__(self, start, collated, what):
        if isinstance(collated, Mapping):
            self.kwargs = {k: _as_tensor(collated[k]) for k in sorted(collated)}
            self.args = ()
            n = len(next(iter(self.kwargs.values())))
        else:
            self.args = (_as_tensor(collated),)
            self.kwargs = {}
            n = self.args[0].shape[0]
        for key, t in (*enumerate(self.args), *self.kwargs.items()):
            _check_finite(t, f"{what} ({key})")
        super().__init__(start, n)

    def _digest_rows(self):
        keys = list(self.kwargs)
        return row_digests([*self.args, *(self.kwargs[k] for k in keys)],
                           names=[f"arg{i}" for i in range(len(self.args))] + keys)

    def build(self, positions):
        whole = len(positions) == self.n
        pick = (lambda t: t) if whole else (lambda t: _take(t, positions))
        kwargs = {k: pick(v) for k, v in self.kwargs.items()}
        return Batch(args=tuple(pick(a) for a in self.args), kwargs=kwargs,
                     mask=kwargs.get("attention_mask"), n=len(positions))


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

    def chunks(self, batch_size):
        from torch.utils.data import default_collate

        for start in range(0, len(self), batch_size):
            items = [
                _first_input(self.dataset[i])
                for i in range(start, min(start + batch_size, len(self)))
            ]
            yield _CollatedChunk(start, default_collate(items), "Dataset items")


class LoaderInput:
    """A ``torch.utils.data.DataLoader`` read in order; ``(x, y, ...)`` batches give x."""

    kind = "dataset"

    def __init__(self, loader):
        from torch.utils.data import SequentialSampler

        if not isinstance(loader.sampler, SequentialSampler):
            raise ValueError(
                f"The DataLoader's sampler is {type(loader.sampler).__name__}: rows "
                "would come in another order than the dataset's, so features could not "
                "be matched with labels. Pass a DataLoader with shuffle=False (and no "
                "sampler)."
            )
        self.loader = loader
        n = len(loader.dataset)
        if loader.drop_last:
            n -= n % loader.batch_size
        if n == 0:
            raise ValueError("Found a DataLoader with 0 samples; at least 1 is required.")
        self._n = n

    def __len__(self):
        return self._n

    @property
    def sample_shape(self):
        return None

    def chunks(self, batch_size):
        start = 0
        for batch in self.loader:
            chunk = _CollatedChunk(start, _first_input(batch), "DataLoader batches")
            start += chunk.n
            yield chunk
        if start != self._n:
            raise ValueError(
                f"The DataLoader yielded {start} rows, but its dataset has {self._n}."
            )


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


def _check_finite(value, what):
    if isinstance(value, torch.Tensor):
        _check_tensor_values(value, what)
        return
    a = np.asarray(value)
    if a.dtype.kind == "c":
        raise ValueError(f"{what} is complex; complex data is not supported.")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinity.")


def _check_tensor_values(t, what):
    _check_dense(t)
    if t.is_complex():
        raise ValueError(f"{what} is complex; complex data is not supported.")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contains NaN or infinity.")


def _check_dense(t):
    if t.layout != torch.strided:
        raise TypeError(
            f"A sparse tensor ({t.layout}) was passed, but dense data is required: a "
            "network takes dense tensors. Use X.to_dense() to convert it."
        )


def _is_text(X):
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(t, str) for t in X)


def check_tensor(X):
    """Validate a torch tensor input: dense, at least 2-D, non-empty, finite, real."""
    _check_dense(X)
    if X.ndim < 2:
        raise ValueError(
            f"Expected a tensor with a sample axis and at least one feature axis, got "
            f"shape {tuple(X.shape)}. Reshape a single feature with X.reshape(-1, 1)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"Found a tensor with 0 samples (shape {tuple(X.shape)}).")
    if X.numel() == 0:
        raise ValueError(f"Found a tensor with no features (shape {tuple(X.shape)}).")
    _check_tensor_values(X, "Input values")
    return X


def make_input(X, *, tokenizer=None, max_length=None, preprocess=None, validate_array=None):
    """Wrap ``X`` in the matching adapter.

    Parameters
    ----------
    X : array-like, torch.Tensor, DataFrame, mapping, Dataset, DataLoader or list of str
        The input.
    tokenizer : callable, default=None
        A Hugging Face tokenizer; required for lists of strings.
    max_length : int, default=None
        Truncation length for the tokenizer.
    preprocess : callable, default=None
        Turns a list of raw items into a model batch; makes ``X`` an
        :class:`ItemInput`.
    validate_array : callable, default=None
        ``validate_array(X) -> ndarray`` used for array-likes (the transformer
        passes its ``validate_data`` here so feature names are tracked).

    Returns
    -------
    adapter : ArrayInput, DictInput, TextInput, DatasetInput, LoaderInput or ItemInput
    """
    from scipy import sparse
    from torch.utils.data import DataLoader, Dataset

    if sparse.issparse(X):
        raise TypeError(
            "Sparse data was passed for X, but dense data is required: a network "
            "takes dense tensors. Use X.toarray() to convert it."
        )
    if isinstance(X, str):
        raise ValueError(
            "Expected a list of strings (one per sample), got a single string. "
            "Wrap it in a list: [text]."
        )
    if preprocess is not None:
        items = _items(X)
        if not items:
            raise ValueError("Found no items in X; at least 1 is required.")
        return ItemInput(items, preprocess)
    reason = _needs_preprocess(X)
    if reason is not None:
        raise ValueError(
            f"{reason}: a network takes tensors of one shape. Pass preprocess=, a "
            "callable turning a list of items into a tensor batch (for example "
            "lambda rows: torch.stack([transform(r) for r in rows]))."
        )
    if isinstance(X, torch.Tensor):
        return ArrayInput(check_tensor(X))
    if isinstance(X, Mapping):  # dicts and tokenizer outputs (BatchEncoding)
        return DictInput(X)
    if isinstance(X, DataLoader):
        return LoaderInput(X)
    if isinstance(X, Dataset):
        if len(X) == 0:
            raise ValueError("Found a Dataset with 0 samples; at least 1 is required.")
        return DatasetInput(X)
    if tokenizer is not None or _is_text(X):
        if tokenizer is None:
            raise ValueError(
                "Got a list of strings but no tokenizer; pass tokenizer=... (e.g. "
                "transformers.AutoTokenizer.from_pretrained(path)), or preprocess= "
                "if the strings are file paths to load."
            )
        texts = list(X)
        if not texts:
            raise ValueError("Found an empty list of texts; at least 1 is required.")
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("With a tokenizer, X must be a list of strings.")
        return TextInput(texts, tokenizer, max_length=max_length)
    if isinstance(X, numbers.Number):
        raise ValueError(f"Expected an array-like of samples, got a scalar {X!r}.")
    if validate_array is None:
        validate_array = lambda a: check_array(a, allow_nd=True)  # noqa: E731
    return ArrayInput(validate_array(X))
