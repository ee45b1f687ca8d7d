"""Raw items -- PIL images, file paths, arrays of any size -- through ``preprocess``."""

from collections.abc import Mapping

import numpy as np
import torch

from ._batch import Batch, Chunk, as_tensor, check_tensor_values
from ._digests import digest, digestible, is_pil_image, item_digest
from ._identity import preprocess_name


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
            kwargs = {k: as_tensor(out[k]) for k in out}
            args = ()
        else:
            args, kwargs = (as_tensor(out),), {}
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
            check_tensor_values(t, f"preprocess output ({key})")
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


def as_items(X):
    """``X`` as a list of items, read by position.

    A sequence is taken as it is and an array by its rows. A pandas Series is
    read by position, never by its index labels (after ``sample``,
    ``train_test_split`` or with a string index, label ``i`` is not row ``i``),
    and a one-column DataFrame, as ``ColumnTransformer`` passes a column, is
    that column's items.
    """
    if isinstance(X, (list, tuple)):
        return list(X)
    if hasattr(X, "iloc"):  # pandas Series or DataFrame
        if getattr(X, "ndim", 1) == 2:
            if X.shape[1] != 1:
                raise ValueError(
                    f"With preprocess=, a DataFrame must hold one column of items; got "
                    f"{X.shape[1]} columns {list(X.columns)}. Select the column of "
                    "items (X['path'] or X[['path']])."
                )
            X = X.iloc[:, 0]
        return X.tolist()
    if isinstance(X, (np.ndarray, torch.Tensor)):
        return [X[i] for i in range(len(X))]
    if hasattr(X, "__len__") and hasattr(X, "__getitem__"):
        return [X[i] for i in range(len(X))]
    raise TypeError(
        f"With preprocess=, X must be a sequence of items (images, file paths, "
        f"arrays); got {type(X).__name__}."
    )


def column_of_items(X):
    """A pandas Series, or a one-column DataFrame, of objects as a list by position.

    Strings, paths and images arrive in pandas as an ``object`` column; read
    by position, they become the list the text and item adapters take. Numeric
    pandas input is left to the array adapter (a tabular network's columns).
    """
    if not hasattr(X, "iloc") or getattr(X, "ndim", 0) not in (1, 2):
        return X
    if X.ndim == 2:
        if X.shape[1] != 1:
            return X
        column = X.iloc[:, 0]
    else:
        column = X
    if column.dtype != object and str(column.dtype) not in ("string", "str"):
        return X
    return column.tolist()


def needs_preprocess(X):
    """A reason why ``X`` cannot be read without ``preprocess=``, or None."""
    if not isinstance(X, (list, tuple)) or not X:
        return None
    first = X[0]
    if is_pil_image(first):
        return "X holds PIL images"
    if isinstance(first, np.ndarray) and any(
        not isinstance(x, np.ndarray) or x.shape != first.shape for x in X
    ):
        return "X holds arrays of different shapes"
    return None
