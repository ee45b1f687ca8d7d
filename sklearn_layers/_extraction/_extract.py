"""The batch loop: inputs -> (cache) -> capture -> pooled feature matrix."""

from contextlib import ExitStack

import numpy as np
import torch

from ._capture import capture
from ._fingerprint import model_fingerprint
from ._pooling import pooling_key

_PREFETCHABLE = ("auto", "mean", "max")


def _model_float_dtype(model):
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def _layer_key(name, pooling):
    key = pooling_key(pooling)
    return None if key is None else f"{name}|{key}"


def prefetch_poolings(blocks, poolings, pooling_param):
    """Blocks computed alongside the requested layers so later requests hit the cache.

    Only cheap, fixed-width poolings are prefetched (never ``"flatten"``, whose
    width can be huge, nor a callable, whose cost is unknown).
    """
    if isinstance(pooling_param, dict):
        default = "auto"
    elif isinstance(pooling_param, str) and pooling_param in _PREFETCHABLE:
        default = pooling_param
    elif isinstance(pooling_param, int) and not isinstance(pooling_param, bool):
        default = pooling_param
    else:
        return {}
    return {b: default for b in blocks if b not in poolings}


def extract(
    model,
    adapter,
    poolings,
    *,
    batch_size,
    device,
    cache=None,
    prefetch=None,
    widths=None,
    progress=False,
):
    """Run ``adapter``'s rows through ``model`` and return pooled features.

    Parameters
    ----------
    model : torch.nn.Module
        The frozen network (left unchanged).
    adapter : input adapter
        From :func:`~._inputs.make_input`.
    poolings : dict
        Requested layer name -> pooling, in output order.
    batch_size : int
        Rows per forward pass.
    device : torch.device
        Where inputs are sent.
    cache : MemoryCache, DiskCache or None
        Row-keyed activation cache.
    prefetch : dict, default=None
        Extra layer name -> pooling computed on a miss and stored in the cache.
    widths : dict, default=None
        Layer name -> number of features. When given, the result is one
        pre-sized ``(n_samples, sum(widths))`` array; otherwise a dict of arrays.
    progress : bool, default=False
        Show a progress bar over batches (tqdm).

    Returns
    -------
    features : ndarray or dict of ndarray
    """
    names = list(poolings)
    keys = {name: _layer_key(name, p) for name, p in poolings.items()}
    if None in keys.values():
        cache = None  # a pooling without a stable identity is never cached
    prefetch = dict(prefetch or {}) if cache is not None else {}
    captured = {**poolings, **prefetch}
    captured_keys = {name: _layer_key(name, p) for name, p in captured.items()}
    float_dtype = _model_float_dtype(model)
    fingerprint = None
    if cache is not None:
        fingerprint = f"{model_fingerprint(model)}-{float_dtype}-{device.type}"
    n = len(adapter)
    out, slices = _allocate(n, names, widths)
    bar = _progress(progress, n)
    # With a cache, a miss computes every captured layer (requested + prefetched);
    # without one, the forward stops at the last requested layer.
    run = None
    with ExitStack() as stack:
        stack.callback(bar.close)
        start = 0
        for batch in adapter.batches(batch_size):
            rows = len(batch)
            todo = list(range(rows))
            if cache is not None:
                found = cache.lookup(fingerprint, [keys[nm] for nm in names], batch.digests)
                todo = [i for i in todo if any(found[keys[nm]][i] is None for nm in names)]
                missing = set(todo)
                done = [i for i in range(rows) if i not in missing]
                if done:
                    for name in names:
                        values = np.stack([found[keys[name]][i] for i in done])
                        _write(out, slices, name, start + np.asarray(done), values)
            if todo:
                if run is None:  # hooks go on only once some row misses
                    run = stack.enter_context(
                        capture(model, list(captured), captured,
                                early_exit=not prefetch, optional=set(prefetch))
                    )
                sub = batch if len(todo) == rows else batch.select(todo)
                results = run(sub.to(device, float_dtype))
                arrays = {name: t.numpy() for name, t in results.items()}
                for name in names:
                    _write(out, slices, name, start + np.asarray(todo), arrays[name])
                if cache is not None:
                    stored = {captured_keys[nm]: arrays[nm] for nm in arrays}
                    cache.store(fingerprint, stored, sub.digests)
            start += rows
            bar.update(rows)
    return out


def layer_slices(names, widths):
    """Column slice of each layer in the side-by-side feature matrix."""
    slices, offset = {}, 0
    for name in names:
        slices[name] = slice(offset, offset + widths[name])
        offset += widths[name]
    return slices


def _allocate(n, names, widths):
    if widths is None:  # probe mode: one array per layer, allocated on first write
        return {}, None
    slices = layer_slices(names, widths)
    total = max((sl.stop for sl in slices.values()), default=0)
    return np.empty((n, total), dtype=np.float32), slices


def _write(out, slices, name, rows, values):
    if slices is None:
        if name not in out:
            out[name] = np.empty((int(rows.max()) + 1, values.shape[1]), np.float32)
        out[name][rows] = values
        return
    target = slices[name]
    if values.shape[1] != target.stop - target.start:
        raise ValueError(
            f"Layer {name!r} produced {values.shape[1]} features per sample, but "
            f"{target.stop - target.start} were found at fit time. The activation's "
            "shape depends on the input's shape: transform inputs shaped like the "
            "fit data, or choose a pooling with a fixed width (e.g. 'mean')."
        )
    out[rows, target] = values


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(enabled, total):
    if not enabled:
        return _NoBar()
    from ..utils._optional import import_optional

    tqdm = import_optional("tqdm", purpose="verbose=True (a progress bar)")
    return tqdm.tqdm(total=total, unit="rows", desc="extracting")


def probe_widths(model, adapter, poolings, *, device, cache=None, prefetch=None):
    """Feature width of each layer, from the first row of ``adapter``.

    The row goes through :func:`extract` (and so through the cache), so probing
    at fit time costs one row, and nothing when the row is already cached.
    """
    first = _FirstRow(adapter)
    features = extract(
        model, first, poolings, batch_size=1, device=device, cache=cache,
        prefetch=prefetch, widths=None,
    )
    return {name: int(features[name].shape[1]) for name in poolings}


class _FirstRow:
    """An adapter view holding only the first row of another adapter."""

    def __init__(self, adapter):
        self._batch = next(adapter.batches(1))

    def __len__(self):
        return 1

    def batches(self, batch_size):
        yield self._batch
