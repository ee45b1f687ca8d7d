"""Feature width of each layer, from one row sent through the network at ``fit``."""

from ._extract import extract
from ._fingerprint import count_rows


def probe_widths(model, adapter, poolings, *, device, cache=None, prefetch=None,
                 precision="float32"):
    """Feature width of each layer, from the first row of ``adapter``.

    The row may come from a cache whose every entry this process computed (a
    :class:`MemoryCache`); from any other cache it is computed: an entry
    written by someone else (a foreign file in a shared cache directory) must
    not decide the widths a fitted transformer promises.
    """
    counted = cache
    if not getattr(cache, "computed_here", False):
        cache = prefetch = None
    features = extract(
        model, _FirstRow(adapter), poolings, batch_size=1, device=device, cache=cache,
        prefetch=prefetch, widths=None, precision=precision,
    )
    if cache is None:
        count_rows(counted, 1)
    return {name: int(features[name].shape[1]) for name in poolings}


class _FirstRow:
    """An adapter view holding only the first row of another adapter."""

    def __init__(self, adapter):
        self.kind = adapter.kind
        self.cacheable = getattr(adapter, "cacheable", True)
        for what in ("tokenizer", "preprocess", "_name"):  # named in a warning
            if hasattr(adapter, what):
                setattr(self, what, getattr(adapter, what))
        self._chunk = next(adapter.chunks(1))

    def __len__(self):
        return 1

    def chunks(self, batch_size):
        yield _OneRow(self._chunk)


class _OneRow:
    def __init__(self, chunk):
        self.start, self.n, self._chunk = 0, 1, chunk

    @property
    def digests(self):
        return self._chunk.digests[:1]

    def order(self, positions):
        return positions

    def build(self, positions):
        return self._chunk.build([0])
