"""The price of a layer: the share of a full forward pass spent to reach it.

An early layer that scores as well as the last one makes every later
prediction cheaper, since extraction stops there. The share is counted in
floating-point operations with ``torch.utils.flop_counter.FlopCounterMode``
(deterministic, independent of the machine's load) on one row: the running
total when the layer's hook fires, over the total of the whole forward pass.
Where no operation can be counted (custom kernels), it falls back to the
share of wall time measured the same way. The extraction time per row with
early exit is measured separately, on a sample of rows.
"""

import time

import numpy as np
import torch

from .._extraction._capture import eval_mode
from .._extraction._layers import captures_input, module_of
from .._extraction._tap import is_fused_layer


class _Clock:
    """Running FLOP count (or time) at each watched layer's hook."""

    _sklearn_layers_internal = True

    def __init__(self, reached, name, read):
        self.reached, self.name, self.read = reached, name, read

    def __call__(self, module, args, output=None):
        if self.name not in self.reached:
            self.reached[self.name] = self.read()


def _watch(model, layers, reached, read, handles):
    """Register the clocks, appending each handle as soon as it exists."""
    for name in layers:
        module = module_of(model, name)
        clock = _Clock(reached, name, read)
        if captures_input(name):
            handles.append(module.register_forward_pre_hook(clock))
        else:
            handles.append(module.register_forward_hook(clock))
    # fused encoder kernels are not counted: a hook sends them down the slow path
    for module in model.modules():
        if is_fused_layer(module):
            handles.append(module.register_forward_pre_hook(_noop))


def _noop(module, args):
    return None


_noop._sklearn_layers_internal = True


def _shares(model, batch, layers, read, counter):
    reached, handles = {}, []
    try:
        _watch(model, layers, reached, read, handles)
        with eval_mode(model), torch.no_grad(), counter:
            start = read()
            model(*batch.args, **batch.kwargs)
            total = read() - start
            reached = {name: value - start for name, value in reached.items()}
    finally:
        for handle in handles:
            handle.remove()
    return reached, total


def forward_shares(model, batch, layers):
    """Share of a full forward pass spent before each layer's output exists.

    Parameters
    ----------
    model : torch.nn.Module
    batch : Batch
        One ready row.
    layers : list of str
        Resolved layer names.

    Returns
    -------
    shares : dict of str -> float
        In [0, 1]; NaN for a layer that did not run.
    unit : {"flops", "time"}
        What was counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    reached, total = _shares(model, batch, layers, counter.get_total_flops, counter)
    unit = "flops"
    if total <= 0:
        reached, total = _shares(model, batch, layers, time.perf_counter, _Nothing())
        unit = "time"
    shares = {name: float(reached[name] / total) if name in reached and total > 0 else np.nan
              for name in layers}
    return shares, unit


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def seconds_per_row(make_extractor, X_sample, layers, n_rows):
    """Wall time per row of extracting each layer alone, with early exit and no cache."""
    timings = {}
    for name in layers:
        extractor = make_extractor(name).fit(X_sample)
        start = time.perf_counter()
        extractor.transform(X_sample)
        timings[name] = (time.perf_counter() - start) / n_rows
    return timings

