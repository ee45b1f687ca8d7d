"""One progress bar over the fits of a layer search."""

from contextlib import contextmanager

from ..utils._optional import import_optional


@contextmanager
def fit_progress(verbose, total, desc="layers x heads x splits"):
    """Yield a callable advancing one bar by n fits (a no-op when ``verbose`` is 0)."""
    if not verbose or total <= 0:
        yield None
        return
    tqdm = import_optional("tqdm", purpose="verbose >= 1 (a progress bar)")
    bar = tqdm.tqdm(total=total, unit="fit", desc=desc)
    try:
        yield bar.update
    finally:
        bar.close()
