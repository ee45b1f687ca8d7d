"""The batch loop: input chunks -> (cache) -> capture -> pooled feature matrix."""

from contextlib import ExitStack

import numpy as np
import torch

from ._capture import capture
from ._fingerprint import cache_identity, count_rows
from ._plan import make_plan
from ._precision import autocast
from ._progress import progress_bar


def model_float_dtype(model):
    """The dtype floating inputs are cast to: the model's first floating parameter's."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


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
    precision="float32",
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
        pre-sized ``(n_samples, sum(widths))`` array and cached rows of another
        width are recomputed; otherwise a dict of arrays.
    progress : bool, default=False
        Show a progress bar over the rows that go through the network (tqdm).
    precision : {"float32", "bfloat16", "float16"}, default="float32"
        The forward runs under ``torch.autocast`` on ``device`` for the 16-bit
        ones (:mod:`._precision`); cache keys name it.

    Returns
    -------
    features : ndarray or dict of ndarray
    """
    with autocast(device, precision):
        return _extract(model, adapter, poolings, batch_size=batch_size, device=device,
                        cache=cache, prefetch=prefetch, widths=widths, progress=progress,
                        precision=precision)


def _extract(model, adapter, poolings, *, batch_size, device, cache, prefetch, widths,
             progress, precision):
    float_dtype = model_float_dtype(model)
    fingerprint = cache_identity(
        model, poolings, cache=cache, cacheable=getattr(adapter, "cacheable", True),
        device=device, float_dtype=float_dtype, adapter=adapter,
    )
    plan = make_plan(poolings, cache=cache, fingerprint=fingerprint, prefetch=prefetch,
                     precision=precision)
    names = list(poolings)
    n = len(adapter)
    out, slices = _allocate(n, names, widths)
    bar = progress_bar(progress, unit="rows", desc="extracting")
    run = None
    with ExitStack() as stack:
        stack.callback(bar.close)
        for chunk in adapter.chunks(batch_size):
            todo = list(range(chunk.n))
            if plan.cache is not None:
                todo = _serve_hits(plan, chunk, names, out, slices, widths)
            if not todo:
                continue
            bar.expect(len(todo) + max(n - chunk.start - chunk.n, 0))
            if run is None:  # hooks go on only once some row misses
                run = stack.enter_context(
                    capture(model, list(plan.captured), plan.captured,
                            early_exit=plan.early_exit, optional=plan.optional)
                )
            order = chunk.order(todo)
            for lo in range(0, len(order), batch_size):
                positions = order[lo : lo + batch_size]
                batch = chunk.build(positions).to(device, float_dtype)
                arrays = {name: t.numpy() for name, t in run(batch).items()}
                count_rows(cache, len(positions))
                rows = chunk.start + np.asarray(positions)
                for name in names:
                    _write(out, slices, name, rows, arrays[name])
                if plan.cache is not None:
                    plan.cache.store(plan.fingerprint, plan.keyed(arrays),
                                     [chunk.digests[i] for i in positions])
                bar.update(len(positions))
    return out


def _serve_hits(plan, chunk, names, out, slices, widths):
    """Write the rows the cache holds; return the positions still to compute."""
    keys = {name: plan.keys[name] for name in names}
    found = plan.cache.lookup(plan.fingerprint, list(dict.fromkeys(keys.values())),
                              chunk.digests)
    done, todo = [], []
    for i in range(chunk.n):
        rows = [found[keys[name]][i] for name in names]
        usable = all(r is not None for r in rows) and (
            widths is None
            or all(r.shape == (widths[name],) for r, name in zip(rows, names))
        )
        (done if usable else todo).append(i)
    if done:
        target = chunk.start + np.asarray(done)
        for name in names:
            values = np.stack([found[keys[name]][i] for i in done])
            _write(out, slices, name, target, values)
    return todo


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
