"""Rows that arrive collated: a map-style ``Dataset`` or a ``DataLoader``."""

from collections.abc import Mapping

import numpy as np
import torch

from ._batch import Batch, Chunk, as_tensor, check_finite, take_rows
from ._digests import row_digests


class _CollatedChunk(Chunk):
    """Rows already collated into tensors (a Dataset slice or a DataLoader batch).

    ``owned`` says whether the collated tensors were made for this chunk
    (``default_collate`` stacks its items into new tensors; a DataLoader's
    ``collate_fn`` may return anyone's memory).
    """

    def __init__(self, start, collated, what, owned=False):
        self.owned = owned
        if isinstance(collated, Mapping):
            self.kwargs = {
                k: _collated_tensor(collated[k], what, repr(k)) for k in sorted(collated)
            }
            self.args = ()
        else:
            self.args = (_collated_tensor(collated, what, "the input"),)
            self.kwargs = {}
        if not self.args and not self.kwargs:
            raise ValueError(f"{what} collated into an empty mapping: there is no input.")
        inputs = (*enumerate(self.args), *self.kwargs.items())
        rows = {key: t.shape[0] for key, t in inputs}
        n = next(iter(rows.values()))
        if any(r != n for r in rows.values()):
            raise ValueError(
                f"{what} collated into inputs with different numbers of rows (axis 0): "
                f"{rows}. Every input of a batch needs one row per sample."
            )
        for key, t in inputs:
            check_finite(t, f"{what} ({key})")
        super().__init__(start, n)

    def _digest_rows(self):
        keys = list(self.kwargs)
        # positional inputs are named by position, as an array's are: never the
        # string of a keyword that reaches the model by name
        return row_digests([*self.args, *(self.kwargs[k] for k in keys)],
                           names=list(range(len(self.args))) + keys)

    def build(self, positions):
        whole = len(positions) == self.n
        pick = (lambda t: t) if whole else (lambda t: take_rows(t, positions))
        kwargs = {k: pick(v) for k, v in self.kwargs.items()}
        return Batch(args=tuple(pick(a) for a in self.args), kwargs=kwargs,
                     mask=kwargs.get("attention_mask"), n=len(positions),
                     owned=self.owned or not whole)


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
            chunk = _CollatedChunk(start, default_collate(items), "Dataset items",
                                   owned=True)
            if chunk.n != len(items):
                raise ValueError(
                    f"{len(items)} Dataset items collated into inputs of {chunk.n} rows "
                    "(axis 0); each item must be one row. Return each item's input as "
                    "a tensor or array of the sample's shape."
                )
            yield chunk


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
        if loader.drop_last:
            raise ValueError(
                "The DataLoader has drop_last=True: its last incomplete batch would be "
                "dropped, giving fewer feature rows than samples, which could then not "
                "be matched with labels. Pass a DataLoader with drop_last=False."
            )
        self.loader = loader
        n = len(loader.dataset)
        if n == 0:
            raise ValueError("Found a DataLoader with 0 samples; at least 1 is required.")
        self._n = n

    def __len__(self):
        return self._n

    @property
    def sample_shape(self):
        return None

    def chunks(self, batch_size):
        start, size = 0, self.loader.batch_size
        for batch in self.loader:
            chunk = _CollatedChunk(start, _first_input(batch), "DataLoader batches")
            if size is not None and chunk.n != min(size, self._n - start):
                raise ValueError(
                    f"A DataLoader batch of {min(size, self._n - start)} samples "
                    f"(batch_size={size}) collated into inputs of {chunk.n} rows (axis "
                    "0); each sample must be one row. Return each sample's input as a "
                    "tensor or array, or collate the batch into tensors whose axis 0 "
                    "is the sample axis."
                )
            start += chunk.n
            yield chunk
        if start != self._n:
            raise ValueError(
                f"The DataLoader yielded {start} rows, but its dataset has {self._n}."
            )


def _collated_tensor(value, what, name):
    """A collated input as a tensor, refusing anything but a tensor or an array with a
    row axis (``default_collate`` makes a list of a list or a tuple, transposed)."""
    if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim > 0:
        return as_tensor(value)
    if isinstance(value, (list, tuple)):
        found = f"a {type(value).__name__} of {len(value)} values"
    elif isinstance(value, (np.ndarray, torch.Tensor)):
        found = "a 0-d array"
    else:
        found = f"a {type(value).__name__}"
    raise ValueError(
        f"{what} collated {name} into {found}, not a tensor with one row per sample: a "
        "list or tuple in each item (a list of token ids, a pair of inputs) is collated "
        "position by position, so its rows would not be the samples. Make each item's "
        "input a tensor or array (torch.tensor(ids)), or a dict of them for a model "
        "taking several inputs (model(**item))."
    )


def _first_input(item):
    if isinstance(item, (tuple, list)):
        return item[0]
    return item
