"""Input adapters: turn what the user passes into batches the model can take.

An adapter splits its rows into :class:`Chunk` objects (consecutive rows).
A chunk gives one digest per row for the activation cache *before* anything is
prepared for the model, and builds model :class:`Batch` objects only for the
rows that must go through the network: text that the cache already holds is
never tokenised. Text chunks order the rows they send to the network by length,
so each batch pads little; outputs are written back in the caller's order.
"""

import numbers
from collections.abc import Mapping

import numpy as np
import torch
from sklearn.utils.validation import check_array

from ._batch import (
    Batch,
    Chunk,
    as_tensor,
    check_dense,
    check_finite,
    check_tensor_values,
    take_rows,
)
from ._collated import DatasetInput, LoaderInput
from ._digests import row_digests, text_digests
from ._identity import tokenizer_name
from ._items import ItemInput, as_items, column_of_items, needs_preprocess

_ROWS_PER_CHUNK = 32  # batches per chunk of an in-memory array


class _ArrayChunk(Chunk):
    def __init__(self, start, part, cast):
        super().__init__(start, part.shape[0])
        self.part = part
        self.cast = cast

    def _digest_rows(self):
        return row_digests([self.part])

    def build(self, positions):
        whole = len(positions) == self.n
        rows = self.part if whole else take_rows(self.part, positions)
        return Batch(args=(as_tensor(rows),), kwargs={}, mask=None, n=len(positions),
                     cast_args=self.cast, owned=not whole)


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
            k: as_tensor(v if whole else take_rows(v, positions)) for k, v in self.parts.items()
        }
        return Batch(args=(), kwargs=kwargs, mask=kwargs.get("attention_mask"),
                     n=len(positions), owned=not whole)


class DictInput:
    """A mapping of arrays/tensors with a common sample axis: ``model(**batch)``."""

    kind = "dict"

    def __init__(self, X):
        self.X = {
            k: X[k] if isinstance(X[k], torch.Tensor) else np.asarray(X[k]) for k in sorted(X)
        }
        self._n = _common_length(self.X)
        for key, value in self.X.items():
            check_finite(value, f"Input {key!r}")

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
                     n=len(positions), owned=True)


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


def _is_text(X):
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(isinstance(t, str) for t in X)


def check_tensor(X):
    """Validate a torch tensor input: dense, at least 2-D, non-empty, finite, real."""
    check_dense(X)
    if X.ndim < 2:
        raise ValueError(
            f"Expected a tensor with a sample axis and at least one feature axis, got "
            f"shape {tuple(X.shape)}. Reshape a single feature with X.reshape(-1, 1)."
        )
    if X.shape[0] == 0:
        raise ValueError(f"Found a tensor with 0 samples (shape {tuple(X.shape)}).")
    if X.numel() == 0:
        raise ValueError(f"Found a tensor with no features (shape {tuple(X.shape)}).")
    check_tensor_values(X, "Input values")
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
        items = as_items(X)
        if not items:
            raise ValueError("Found no items in X; at least 1 is required.")
        return ItemInput(items, preprocess)
    # rows are positional whatever the container: a pandas index is no row number
    X = column_of_items(X)
    reason = needs_preprocess(X)
    if reason is not None:
        raise ValueError(
            f"{reason}: a network takes tensors of one shape. Pass preprocess=, a "
            "callable turning a list of items into a tensor batch: a module-level "
            "function, so that its features can be cached and it reaches worker "
            "processes (for example, at the top of your module, def preprocess(rows): "
            "return torch.stack([transform(r) for r in rows]))."
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
        if hasattr(X, "iloc"):
            raise TypeError(
                "With a tokenizer, X must be a list of strings, a pandas Series of "
                f"strings or a one-column DataFrame of strings; got {type(X).__name__} "
                f"of shape {X.shape}."
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
