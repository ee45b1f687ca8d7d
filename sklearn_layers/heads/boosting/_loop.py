"""The GrowNet fit loop: ``fit_loop`` -> ``fit_stage`` / ``corrective_step`` -> ``train_step``.

Every stage adds one learner:

1. :func:`fit_stage` fits it to the stage objective of the loss (see
   ``_grownet_losses.py``) around the current ensemble output ``F``, which is
   cached and fixed during the stage;
2. :func:`corrective_step` then fine-tunes the last ``corrective_window``
   learners jointly on the loss itself. Earlier learners are frozen: their
   summed output and the middle features of the last of them are cached per
   row (:class:`Rows`), so a step costs ``corrective_window`` learners whatever
   the stage, and a fit grows linearly with the number of stages;
3. :func:`refresh` recomputes the cached outputs of the learners that changed;
4. :class:`EarlyStopping` keeps the ensemble with the best validation score.
"""

import time
from dataclasses import dataclass

import torch

from ._core import chunked_pass, learner_state, make_learner


@dataclass
class Rows:
    """One data set on the device and the cached outputs of the ensemble on it.

    ``frozen`` is ``c0 + learning_rate * sum f_t`` over the frozen learners,
    ``frozen_middle`` the middle features of the last frozen one (``None``
    when none is), ``F`` the output of the whole ensemble and ``middle`` the
    middle features of its last learner. ``w`` has mean 1.
    """

    X: torch.Tensor
    Y: torch.Tensor
    w: torch.Tensor
    frozen: torch.Tensor = None
    frozen_middle: torch.Tensor = None
    F: torch.Tensor = None
    middle: torch.Tensor = None


@dataclass(frozen=True)
class Schedule:
    """How much optimisation each stage gets (the estimators' parameters)."""

    max_iter: int
    hidden_units: int
    learning_rate_init: float
    epochs_per_stage: int
    corrective_epochs: int
    corrective_window: int
    batch_size: int
    l2_regularization: float


def adam(params, schedule):
    """Adam with the schedule's step size and L2 penalty, fused where supported."""
    params = list(params)
    kwargs = {"lr": schedule.learning_rate_init, "weight_decay": schedule.l2_regularization}
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # pragma: no cover - old torch
        return torch.optim.Adam(params, foreach=True, **kwargs)


def batches(tensors, batch_size, generator):
    """``tensors`` (row-aligned; ``None`` passes through) in shuffled batches.

    The rows are permuted once per epoch and the batches are contiguous
    slices of the permuted copies, ``n // batch_size`` of them: one gather
    per tensor and epoch instead of one per batch (a gather of a batch's
    rows cost more than its matrix product). One batch holding every row is
    not shuffled, so that it draws nothing from ``generator``: full-batch
    fits then depend on the rows' weighted mean loss only (a row of weight 2
    is the same fit as the row twice).
    """
    n = len(tensors[0])
    if batch_size >= n:
        return (tensors,)
    order = torch.randperm(n, generator=generator).to(tensors[0].device)
    n_batches = max(1, n // batch_size)
    split = [
        (None,) * n_batches if t is None else t.index_select(0, order).tensor_split(n_batches)
        for t in tensors
    ]
    return tuple(zip(*split))


def train_step(optimizer, objective):
    """One optimiser step on ``objective()``."""
    optimizer.zero_grad(set_to_none=True)
    objective().backward()
    optimizer.step()


def run_epochs(optimizer, objective, tensors, n_epochs, schedule, generator):
    """``n_epochs`` passes over the rows of ``tensors``, one :func:`train_step` per batch.

    ``objective(*batch)`` takes one batch of each tensor.
    """
    for _ in range(n_epochs):
        for batch in batches(tensors, schedule.batch_size, generator):
            train_step(optimizer, lambda batch=batch: objective(*batch))


def fit_stage(learner, train, loss, schedule, generator):
    """Fit a new learner to the loss's stage objective around ``train.F``.

    Returns the learner's optimiser, so that its moment estimates carry over
    into the corrective step.
    """
    inputs = learner.inputs(train.X, train.middle).detach()
    optimizer = adam(learner.parameters(), schedule)
    if loss.second_order:
        g, h = loss.grad_hess(train.F, train.Y)

        def objective(inputs, g, h, w):
            _, f = learner.head(inputs)
            return (w * loss.stage_objective(f, None, None, g, h)).mean()

        tensors = (inputs, g, h, train.w)
    else:

        def objective(inputs, F, Y, w):
            _, f = learner.head(inputs)
            return (w * loss.stage_objective(f, F, Y, None, None)).mean()

        tensors = (inputs, train.F, train.Y, train.w)
    run_epochs(optimizer, objective, tensors, schedule.epochs_per_stage, schedule, generator)
    return optimizer


def corrective_step(ensemble, start, train, loss, optimizer, schedule, generator):
    """Fine-tune learners ``start:`` jointly on the loss, the others frozen."""

    def objective(X, frozen, frozen_middle, Y, w):
        F, _ = ensemble.forward_from(start, X, frozen, frozen_middle)
        return loss.loss(F, Y, w)

    tensors = (train.X, train.frozen, train.frozen_middle, train.Y, train.w)
    run_epochs(optimizer, objective, tensors, schedule.corrective_epochs, schedule, generator)


def freeze(ensemble, index, rows):
    """Add learner ``index`` (the oldest one still trained) to ``rows``' frozen cache."""
    middle, f = chunked_pass(ensemble.learners[index], rows.X, rows.frozen_middle)
    rows.frozen = rows.frozen + ensemble.learning_rate * f
    rows.frozen_middle = middle


def refresh(ensemble, start, rows):
    """Recompute ``rows.F`` and ``rows.middle`` from the frozen cache."""
    F, middle = rows.frozen, rows.frozen_middle
    for learner in ensemble.learners[start:]:
        middle, f = chunked_pass(learner, rows.X, middle)
        F = F + ensemble.learning_rate * f
    rows.F, rows.middle = F, middle


def start_cache(ensemble, start, rows):
    """Fill ``rows``' caches for an ensemble whose learners ``:start`` are frozen."""
    rows.frozen = ensemble.c0.expand(len(rows.X), -1)
    rows.frozen_middle = None
    for index in range(start):
        freeze(ensemble, index, rows)
    refresh(ensemble, start, rows)


class EarlyStopping:
    """Validation scores after each stage, the best ensemble, and when to stop.

    ``score(F_train, F_val)`` returns ``(train score, validation score)``,
    higher is better. Training stops once the validation score has not beaten
    the best one by more than ``tol`` for ``n_iter_no_change`` stages; the
    ensemble kept is the one after the best stage. ``train_scores`` and
    ``val_scores`` continue an earlier fit's history (``warm_start``).
    """

    def __init__(self, score, n_iter_no_change, tol, train_scores=(), val_scores=()):
        self.score = score
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.train_scores = list(train_scores)
        self.val_scores = list(val_scores)
        self.best = None  # (validation score, number of stages, state)

    def update(self, n_stages, state, F_train, F_val):
        """Score an ensemble of ``n_stages`` learners; ``True`` when it is time to stop.

        ``state`` is called (to copy the ensemble) only when the score is a new best.
        """
        train_score, val_score = self.score(F_train, F_val)
        self.train_scores.append(train_score)
        self.val_scores.append(val_score)
        if self.best is None or val_score > self.best[0] + self.tol:
            self.best = (val_score, n_stages, state())
        return n_stages - self.best[1] >= self.n_iter_no_change


class StateSnapshots:
    """Numpy copies of the learners; frozen learners are copied once only."""

    def __init__(self, c0, learning_rate, learners=()):
        self.c0 = c0
        self.learning_rate = learning_rate
        self.frozen = list(learners)

    def freeze(self, learner):
        self.frozen.append(learner_state(learner))

    def __call__(self, ensemble):
        trained = [learner_state(m) for m in ensemble.learners[len(self.frozen) :]]
        return {
            "c0": self.c0,
            "learning_rate": self.learning_rate,
            "learners": self.frozen + trained,
        }


def fit_loop(
    ensemble, train, val, loss, schedule, generator, stopping, snapshots, log, feature_mask=None
):
    """Grow ``ensemble`` up to ``schedule.max_iter`` learners; return the state kept.

    ``train`` and ``val`` are :class:`Rows` whose caches match ``ensemble``,
    with its first ``len(snapshots.frozen)`` learners frozen. ``val`` and
    ``stopping`` (an :class:`EarlyStopping`) are ``None`` without early
    stopping, and then every stage is kept. ``snapshots`` is a
    :class:`StateSnapshots`; ``log`` takes one line per stage, or is ``None``.
    ``feature_mask(stage)`` gives the encoded columns a stage's learner sees
    (a boolean tensor), or is ``None`` for all of them.
    """
    all_rows = (train,) if val is None or val is train else (train, val)

    def scored(n_stages):
        if stopping is None:
            return False
        state = lambda: snapshots(ensemble)  # noqa: E731
        return stopping.update(n_stages, state, train.F, None if val is None else val.F)

    if scored(len(ensemble.learners)):
        return stopping.best[2]
    corrective = None
    for stage in range(len(ensemble.learners), schedule.max_iter):
        tic = time.perf_counter()
        learner = make_learner(
            train.X.shape[1], schedule.hidden_units, train.Y.shape[1], train.middle,
            train.w, generator,
        )
        if feature_mask is not None:
            restrict_inputs(learner, feature_mask(stage))
        stage_optimizer = fit_stage(learner, train, loss, schedule, generator)
        ensemble.learners.append(learner)
        start = _window_start(len(ensemble.learners), schedule.corrective_window)
        while len(snapshots.frozen) < start:
            index = len(snapshots.frozen)
            for rows in all_rows:
                freeze(ensemble, index, rows)
            snapshots.freeze(ensemble.learners[index])
        if schedule.corrective_epochs > 0:
            corrective = _grow_optimizer(corrective, learner, stage_optimizer, schedule)
            _drop_frozen(corrective, len(ensemble.learners) - start)
        if schedule.corrective_epochs > 0 and len(ensemble.learners) > 1:
            corrective_step(ensemble, start, train, loss, corrective, schedule, generator)
            for rows in all_rows:
                refresh(ensemble, start, rows)
        else:  # only the new learner changed the output
            for rows in all_rows:
                middle, f = chunked_pass(learner, rows.X, rows.middle)
                rows.F, rows.middle = rows.F + ensemble.learning_rate * f, middle
        stop = scored(len(ensemble.learners))
        if log is not None:
            line = f"[GrowNet] stage {stage + 1:3d}"
            if stopping is not None:
                line += (f": train score {stopping.train_scores[-1]:.5f},"
                         f" validation score {stopping.val_scores[-1]:.5f}")
            log(line + f" ({time.perf_counter() - tic:.2f} s)")
        if stop:
            break
    return snapshots(ensemble) if stopping is None else stopping.best[2]


def restrict_inputs(learner, keep):
    """Make ``learner`` blind to the encoded columns where ``keep`` is false.

    Their input weights are set to zero and their gradients masked, so they
    stay exactly zero through the stage fit and the corrective steps (Adam
    and weight decay leave a zero weight with zero gradients at zero). The
    previous learner's middle features are always seen.
    """
    n_previous = learner.previous_shift.shape[0]
    full = torch.cat([keep, keep.new_ones(n_previous)]).to(learner.hidden.weight.dtype)
    with torch.no_grad():
        learner.hidden.weight.mul_(full)
    learner.hidden.weight.register_hook(lambda grad: grad * full)


def _window_start(n_learners, window):
    """Index of the first learner the corrective step trains (``None``: all)."""
    return 0 if window is None else max(0, n_learners - window)


def _grow_optimizer(corrective, learner, stage_optimizer, schedule):
    """The corrective step's Adam, with ``learner`` added with its stage moments.

    One optimiser serves the whole fit, one parameter group per learner in the
    window: a fresh Adam's first steps move every weight by about its step
    size whatever the gradient, a perturbation of ``F`` that restarting it at
    every stage would repeat.
    """
    params = list(learner.parameters())
    if corrective is None:
        corrective = adam(params, schedule)
    else:
        corrective.add_param_group({"params": params})
    for param in params:
        if param in stage_optimizer.state:
            corrective.state[param] = stage_optimizer.state[param]
    return corrective


def _drop_frozen(corrective, n_trained):
    """Keep the parameter groups (and moments) of the last ``n_trained`` learners only.

    A step's cost grows with the number of groups, even those without
    gradients, so frozen learners leave the optimiser.
    """
    while len(corrective.param_groups) > n_trained:
        for param in corrective.param_groups.pop(0)["params"]:
            corrective.state.pop(param, None)
