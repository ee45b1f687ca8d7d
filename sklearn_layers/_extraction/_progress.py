"""A progress bar over the rows that actually go through the network.

One job (a layer sweep, an ILC fit) extracts in several calls: the training
rows, each test set. Inside :func:`one_bar`, every extraction of the current
thread (and context) advances one shared bar instead of opening its own.
"""

from contextlib import contextmanager
from contextvars import ContextVar

from ..utils._optional import import_optional

_SHARED = ContextVar("sklearn_layers_row_progress", default=None)


class RowProgress:
    """A tqdm bar created on the first row that misses the cache.

    Rows served by the cache never show a bar; the total grows or shrinks as
    later chunks turn out to miss or hit.
    """

    def __init__(self, unit="rows", desc="extracting"):
        self.unit, self.desc = unit, desc
        self.bar = None
        self.done = 0
        self._base = 0  # rows done by earlier extractions sharing this bar

    def start_call(self):
        """A new extraction begins: its expectations add to what is done."""
        self._base = self.done

    def expect(self, remaining):
        """At most ``remaining`` more rows of the current call will go through the network."""
        if self.bar is None:
            tqdm = import_optional("tqdm", purpose="verbose >= 1 (a progress bar)")
            self.bar = tqdm.tqdm(total=self.done + remaining, unit=self.unit, desc=self.desc)
        else:
            self.bar.total = self.done + remaining
            self.bar.refresh()

    def update(self, n):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.total = self.done
            self.bar.close()
            self.bar = None


class _CallView:
    """One extraction's use of a shared bar: closing it leaves the bar open."""

    def __init__(self, shared):
        self.shared = shared
        shared.start_call()

    def expect(self, remaining):
        self.shared.expect(remaining)

    def update(self, n):
        self.shared.update(n)

    def close(self):
        pass


class _Silent:
    def expect(self, remaining):
        pass

    def update(self, n):
        pass

    def close(self):
        pass


def progress_bar(enabled, *, unit="rows", desc="extracting"):
    """The bar for one extraction: the job's shared bar, a new one, or nothing."""
    if not enabled:
        return _Silent()
    shared = _SHARED.get()
    if shared is not None:
        return _CallView(shared)
    return RowProgress(unit, desc)


@contextmanager
def one_bar(enabled):
    """Within the block, extractions that show progress share one bar."""
    if not enabled:
        yield
        return
    bar = RowProgress()
    token = _SHARED.set(bar)
    try:
        yield
    finally:
        _SHARED.reset(token)
        bar.close()
