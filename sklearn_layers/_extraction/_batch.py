"""What adapters hand to the network: a :class:`Batch`, built from a :class:`Chunk`.

A chunk is consecutive rows of an input. It gives one digest per row for the
activation cache *before* anything is prepared for the model, and builds
model batches only for the rows that must go through the network.
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch


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
    owned : bool
        Whether the tensors were made for this batch, so that no one else
        holds their memory (rows picked by index, a tokenizer's output).
        Otherwise they may be the caller's own data, and :meth:`to` copies
        any it would hand over unchanged.
    """

    args: tuple
    kwargs: dict
    mask: object
    n: int
    cast_args: bool = False
    owned: bool = False

    def __len__(self):
        return self.n

    def to(self, device, float_dtype):
        """The batch the model gets: on ``device``, floating tensors in ``float_dtype``.

        Its tensors never share memory with the caller's: a model whose first
        operation is in place (``ReLU(inplace=True)``, ``x.sub_(mean)``) must
        not rewrite the user's ``X``.
        """

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
            else:
                moved = t.to(device=device)
            if not self.owned and _shares_memory(moved, t):
                moved = moved.clone()  # one batch, cheap next to the forward
            return moved

        args = tuple(move(a, self.cast_args) for a in self.args)
        kwargs = {k: move(v) for k, v in self.kwargs.items()}
        if self.mask is None:
            mask = None
        elif self.mask is self.kwargs.get("attention_mask"):
            mask = kwargs["attention_mask"]
        else:
            mask = self.mask.to(device)
        return Batch(args=args, kwargs=kwargs, mask=mask, n=self.n, owned=True)


def _shares_memory(a, b):
    return a.device == b.device and (
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
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


def as_tensor(a):
    if isinstance(a, torch.Tensor):
        return a
    a = np.ascontiguousarray(a)
    if not a.flags.writeable:  # torch.from_numpy needs a writeable buffer
        a = a.copy()
    return torch.from_numpy(a)


def take_rows(a, positions):
    if isinstance(a, torch.Tensor):
        return a.index_select(0, torch.as_tensor(positions, dtype=torch.long, device=a.device))
    return a[np.asarray(positions)]


def check_finite(value, what):
    if isinstance(value, torch.Tensor):
        check_tensor_values(value, what)
        return
    a = np.asarray(value)
    if a.dtype.kind == "c":
        raise ValueError(f"{what} is complex; complex data is not supported.")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinity.")


def check_tensor_values(t, what):
    check_dense(t)
    if t.is_complex():
        raise ValueError(f"{what} is complex; complex data is not supported.")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contains NaN or infinity.")


def check_dense(t):
    if t.layout != torch.strided:
        raise TypeError(
            f"A sparse tensor ({t.layout}) was passed, but dense data is required: a "
            "network takes dense tensors. Use X.to_dense() to convert it."
        )
