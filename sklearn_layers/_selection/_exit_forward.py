"""Early-exit prediction: each row runs the network only as deep as its exit.

The exits are hooked in one capture per stage (:mod:`._exit_schedule`); at
each exit, in cascade order, the rows of the batch still undecided go through
that exit's head, and those confident enough leave with its prediction. The
forward stops (through the capture's ``until``) as soon as every row of the
batch has left, or at the stage's last exit; rows still undecided then are
regrouped for the next stage.

Rows whose every exit the extractor's cache already holds (a grid search
scoring rows its fits extracted) are decided from the cached features, by the
same rule, and run no forward; prediction never stores anything in the cache.
"""

import numpy as np

from .._extraction._cache import make_cache
from .._extraction._capture import capture
from .._extraction._extract import model_float_dtype
from .._extraction._fingerprint import cache_identity
from .._extraction._plan import make_plan
from .._extraction._precision import autocast
from ..utils._threads import torch_threads


class CascadeOutput:
    """Per-row results of a cascade: label, probabilities and exit index."""

    def __init__(self, n_rows, classes, n_classes):
        self.labels = np.empty(n_rows, dtype=classes.dtype)
        self.proba = np.empty((n_rows, n_classes), dtype=float)
        self.exits = np.full(n_rows, -1, dtype=int)

    def decide(self, heads, thresholds, k, features, rows, last):
        """Rows (global indices) whose features at exit ``k`` are given: who leaves.

        Returns the boolean mask, over ``rows``, of the rows that left at ``k``.
        """
        head = heads[k]
        proba = head.predict_proba(features)
        leave = np.ones(len(rows), bool) if k == last else proba.max(axis=1) >= thresholds[k]
        if leave.any():
            chosen = rows[leave]
            self.labels[chosen] = head.predict(features[leave])
            self.proba[chosen] = proba[leave]
            self.exits[chosen] = k
        return leave


class _Decider:
    """The capture's ``until``: decides one batch exit by exit, in cascade order."""

    def __init__(self, names, heads, thresholds, output, first, stop):
        self.names, self.heads, self.thresholds = names, heads, thresholds
        self.output, self.first, self.stop = output, first, stop
        self.last = len(names) - 1

    def start(self, rows):
        self.rows = np.asarray(rows)
        self.open = np.ones(len(rows), bool)
        self.arrived = {}
        self.next = self.first

    def __call__(self, name, features):
        self.arrived[name] = features
        while self.next <= self.stop and self.names[self.next] in self.arrived:
            k = self.next
            F = self.arrived[self.names[k]].numpy()
            idx = np.flatnonzero(self.open)
            left = self.output.decide(self.heads, self.thresholds, k, F[idx],
                                      self.rows[idx], self.last)
            self.open[idx[left]] = False
            self.next += 1
            if not self.open.any():
                return True
        return self.next > self.stop


def run_cascade(extractor, names, adapter, heads, thresholds, stages, output, todo):
    """Decide the rows ``todo`` of the input with early exit, writing into ``output``.

    Parameters
    ----------
    extractor : LayerFeatureTransformer
        Fitted over the exits.
    names : list of str
        The exits, in cascade (forward) order.
    adapter : input adapter
        ``extractor._adapter(X, reset=False)``: validated against the fit input.
    heads : list of fitted classifiers
        One per exit.
    thresholds : ndarray of shape (n_exits,)
    stages : tuple of int
        Stage boundaries (exit indices), ending with the last exit.
    output : CascadeOutput
    todo : ndarray of bool of shape (n_rows,)
        The rows to decide.
    """
    model = extractor.model_
    device, float_dtype = extractor._device(), model_float_dtype(model)
    batch_size = extractor.batch_size
    first = 0
    with torch_threads(extractor.n_threads), autocast(device, extractor.precision):
        for stop in stages:
            if not todo.any():
                break
            hooked = names[first : stop + 1]
            decider = _Decider(names, heads, thresholds, output, first, stop)
            poolings = {name: extractor.poolings_[name] for name in hooked}
            with capture(model, hooked, poolings, until=decider) as run:
                for chunk in adapter.chunks(batch_size):
                    mine = todo[chunk.start : chunk.start + chunk.n]
                    order = chunk.order(list(np.flatnonzero(mine)))
                    for lo in range(0, len(order), batch_size):
                        positions = order[lo : lo + batch_size]
                        decider.start(chunk.start + np.asarray(positions))
                        run(chunk.build(positions).to(device, float_dtype))
            todo = todo & (output.exits < 0)
            first = stop + 1


def serve_cached(extractor, names, adapter, heads, thresholds, output):
    """Decide the rows whose every exit is cached; return the mask of the others.

    A row is served only when the cache holds all its exits (at the fitted
    widths): its decision then reads the same features a forward would compute
    (the cache's own guarantee, under the same key a transform uses).
    """
    todo = np.ones(len(adapter), bool)
    cache = make_cache(extractor.cache)
    if cache is None:
        return todo
    model = extractor.model_
    poolings = {name: extractor.poolings_[name] for name in names}
    with autocast(extractor._device(), extractor.precision):  # as extract keys it
        fingerprint = cache_identity(
            model, poolings, cache=cache, cacheable=getattr(adapter, "cacheable", True),
            device=extractor._device(), float_dtype=model_float_dtype(model),
            adapter=adapter,
        )
    if fingerprint is None:
        return todo
    plan = make_plan(poolings, cache=cache, fingerprint=fingerprint,
                     precision=extractor.precision)
    keys = [plan.keys[name] for name in names]
    widths = [extractor.n_features_per_layer_[name] for name in names]
    last = len(names) - 1
    for chunk in adapter.chunks(extractor.batch_size):
        found = cache.lookup(fingerprint, list(dict.fromkeys(keys)), chunk.digests)
        per_exit = [found[key] for key in keys]
        hits = np.array([i for i in range(chunk.n) if all(
            rows[i] is not None and rows[i].shape == (width,)
            for rows, width in zip(per_exit, widths))], dtype=int)
        if hits.size == 0:
            continue
        rows = chunk.start + hits
        open_rows = np.ones(hits.size, bool)
        for k in range(len(names)):
            sel = np.flatnonzero(open_rows)
            if sel.size == 0:
                break
            features = np.stack([per_exit[k][i] for i in hits[sel]])
            left = output.decide(heads, thresholds, k, features, rows[sel], last)
            open_rows[sel[left]] = False
        todo[rows] = False
    return todo
