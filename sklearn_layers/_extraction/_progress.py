"""A progress bar over the rows that actually go through the network."""

from ..utils._optional import import_optional


class RowProgress:
    """A tqdm bar created on the first row that misses the cache.

    Rows served by the cache never show a bar; the total grows or shrinks as
    later chunks turn out to miss or hit.
    """

    def __init__(self, unit, desc):
        self.unit, self.desc = unit, desc
        self.bar = None
        self.done = 0

    def expect(self, remaining):
        """At most ``remaining`` more rows will go through the network."""
        if self.bar is None:
            tqdm = import_optional("tqdm", purpose="verbose >= 1 (a progress bar)")
            self.bar = tqdm.tqdm(total=remaining, unit=self.unit, desc=self.desc)
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


class _Silent:
    def expect(self, remaining):
        pass

    def update(self, n):
        pass

    def close(self):
        pass


def progress_bar(enabled, *, unit, desc):
    """A :class:`RowProgress` when ``enabled``, else an object that does nothing."""
    return RowProgress(unit, desc) if enabled else _Silent()
