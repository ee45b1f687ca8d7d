"""Rows that arrive collated: a map-style ``Dataset`` or a ``DataLoader``."""

from collections.abc import Mapping

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
            self.kwargs = {k: as_tensor(collated[k]) for k in sorted(collated)}
            self.args = ()
            n = len(next(iter(self.kwargs.values())))
        else:
            self.args = (as_tensor(collated),)
            self.kwargs = {}
            n = self.args[0].shape[0]
        for key, t in (*enumerate(self.args), *self.kwargs.items()):
            check_finite(t, f"{what} ({key})")
        super().__init__(start, n)

    def _digest_rows(self):
        keys = list(self.kwargs)
        return row_digests([*self.args, *(self.kwargs[k] for k in keys)],
                           names=[f"arg{i}" for i in range(len(self.args))] + keys)

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
            yield _CollatedChunk(start, default_collate(items), "Dataset items",
                                 owned=True)


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
