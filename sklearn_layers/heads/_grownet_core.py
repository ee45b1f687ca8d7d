"""Torch side of GrowNet: weak learners, losses and the boosting loop.

Nothing here is public. The estimators in ``_grownet.py`` validate input, encode
targets and scale features, then call :func:`fit_grownet` with float32 tensors
and rebuild an ensemble for prediction with :func:`build_ensemble`.

Cost model (measured in ``benchmarks/bench_grownet.py``): stage ``t`` fits one
new learner on cached inputs (cost independent of ``t``), then runs
``corrective_epochs`` epochs through all ``t`` learners, and refreshes the
cached ensemble output (all ``t`` learners after a corrective step, only the
new one otherwise). Per corrective epoch the cost is linear in ``t``, so the
total fit cost grows like ``n_estimators ** 2`` once the corrective step
dominates (inherent to a fully corrective step: every learner changes); with
``corrective_epochs=0`` it is linear in ``n_estimators``.
"""

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as nnf


# Rows per chunk when running a no-grad pass over a whole data set: one chunk
# for every data set this package is likely to see, bounded memory otherwise.
_CHUNK = 65536


class _WeakLearner(nn.Module):
    """Shallow MLP of the GrowNet reference implementation.

    ``[x, prev_middle] -> BatchNorm -> Linear -> LeakyReLU -> BatchNorm ->
    Linear (middle features) -> ReLU -> Linear (output)``. The first BatchNorm
    exists only for learners after the first one, whose input concatenates the
    (standardised) raw features with the previous learner's unscaled middle
    features, as in the reference code.
    """

    def __init__(self, n_in, n_hidden, n_outputs, chained):
        super().__init__()
        self.input_norm = nn.BatchNorm1d(n_in) if chained else nn.Identity()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.norm = nn.BatchNorm1d(n_hidden)
        self.middle = nn.Linear(n_hidden, n_hidden)
        self.out = nn.Linear(n_hidden, n_outputs)

    def forward(self, x, prev_middle):
        if prev_middle is not None:
            x = torch.cat([x, prev_middle], dim=1)
        h = self.norm(nnf.leaky_relu(self.hidden(self.input_norm(x)), 0.1))
        middle = self.middle(h)
        return middle, self.out(nnf.relu(middle))


class Ensemble(nn.Module):
    """``F(x) = c0 + boost_rate * sum_t f_t(x)`` with chained middle features."""

    def __init__(self, c0, boost_rate):
        super().__init__()
        self.learners = nn.ModuleList()
        self.register_buffer("c0", torch.as_tensor(c0, dtype=torch.float32))
        self.boost_rate = nn.Parameter(torch.tensor(float(boost_rate)))

    def forward(self, x):
        out, middle = self.c0.expand(x.shape[0], -1), None
        total = 0.0
        for learner in self.learners:
            middle, f = learner(x, middle)
            total = total + f
        return out + self.boost_rate * total

    def staged(self, x):
        """Yield the ensemble output after each learner (no autograd)."""
        with torch.no_grad():
            total, middle = torch.zeros_like(self.c0.expand(x.shape[0], -1)), None
            for learner in self.learners:
                middle, f = learner(x, middle)
                total = total + f
                yield self.c0 + self.boost_rate * total


def _make_learner(n_features, n_hidden, n_outputs, index, generator, device):
    """A learner initialised from ``generator`` only (PyTorch's default scheme).

    Built on the meta device and initialised explicitly so that torch's global
    RNG is never used.
    """
    n_in = n_features + (n_hidden if index > 0 else 0)
    with torch.device("meta"):
        learner = _WeakLearner(n_in, n_hidden, n_outputs, chained=index > 0)
    learner = learner.to_empty(device=device)
    with torch.no_grad():
        for module in learner.modules():
            if isinstance(module, nn.Linear):
                # kaiming_uniform(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                bound = 1.0 / math.sqrt(module.in_features)
                for param in (module.weight, module.bias):
                    u = torch.rand(param.shape, generator=generator)
                    param.copy_((2 * u - 1) * bound)
            elif isinstance(module, nn.BatchNorm1d):
                module.reset_parameters()
    return learner


def build_ensemble(state, device="cpu", dtype=torch.float64):
    """Rebuild a fitted ensemble from its numpy state (see :func:`ensemble_state`)."""
    ensemble = Ensemble(state["c0"], 1.0)
    for i, learner_state in enumerate(state["learners"]):
        n_hidden, n_in = learner_state["hidden.weight"].shape
        n_outputs = learner_state["out.weight"].shape[0]
        with torch.device("meta"):
            learner = _WeakLearner(n_in, n_hidden, n_outputs, chained=i > 0)
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in learner_state.items()}
        learner.load_state_dict(tensors, assign=True)
        ensemble.learners.append(learner)
    with torch.no_grad():
        ensemble.boost_rate.fill_(float(state["boost_rate"]))
    return ensemble.to(device=device, dtype=dtype).eval()


def ensemble_state(ensemble, n_learners=None):
    """CPU numpy copy of the first ``n_learners`` learners, ``c0`` and alpha."""
    learners = list(ensemble.learners)[:n_learners]
    return {
        "c0": ensemble.c0.detach().cpu().numpy().astype(np.float64),
        "boost_rate": float(ensemble.boost_rate.detach().cpu()),
        "learners": [
            {k: v.detach().cpu().numpy().copy() for k, v in m.state_dict().items()}
            for m in learners
        ],
    }


class SquaredError:
    """Half squared error on (standardised) targets; Newton step = residual."""

    def init(self, Y):
        return Y.mean(dim=0)

    def loss(self, F, Y):
        return 0.5 * ((F - Y) ** 2).sum(dim=1).mean()

    def grad_hess(self, F, Y):
        return F - Y, torch.ones_like(F)


class BinaryLogistic:
    """Logistic loss on one logit; targets ``Y`` in {0, 1}, shape (n, 1)."""

    def init(self, Y):
        p = Y.mean(dim=0).clamp(1e-6, 1 - 1e-6)
        return torch.log(p / (1 - p))

    def loss(self, F, Y):
        return nnf.binary_cross_entropy_with_logits(F, Y)

    def grad_hess(self, F, Y):
        p = torch.sigmoid(F)
        return p - Y, p * (1 - p)


class Multinomial:
    """Softmax cross-entropy on K logits; ``Y`` one-hot, shape (n, K).

    The stage fit uses the diagonal of the softmax Hessian, ``p_k (1 - p_k)``,
    as multiclass gradient boosting usually does.
    """

    def init(self, Y):
        return torch.log(Y.mean(dim=0).clamp_min(1e-6))

    def loss(self, F, Y):
        return -(Y * nnf.log_softmax(F, dim=1)).sum(dim=1).mean()

    def grad_hess(self, F, Y):
        p = torch.softmax(F, dim=1)
        return p - Y, p * (1 - p)


def _adam(params, **kwargs):
    """Adam, fused (one kernel for all tensors) where this torch supports it.

    The fused kernel is ~3x faster than ``foreach`` for the many small tensors
    of a grown ensemble.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # pragma: no cover - old torch
        return torch.optim.Adam(params, foreach=True, **kwargs)


def _batches(n, batch_size, generator, device):
    """Shuffled index batches of at least 2 rows (BatchNorm needs 2)."""
    perm = torch.randperm(n, generator=generator).to(device)
    return perm.tensor_split(max(1, n // batch_size))


def _forward_from(ensemble, X, cache=None, start=0, recalibrate=False):
    """Eval-mode pass of learners ``start:`` over ``X``; return a new cache.

    ``cache`` is ``(total, middle)``: the sum of the outputs of learners
    ``:start`` and the middle features of learner ``start - 1``, so that a
    stage without a corrective step costs one learner, not ``t``. With
    ``recalibrate``, each learner's BatchNorm statistics are first recomputed
    on ``X`` (train-mode pass, cumulative average ``momentum=None``), so the
    running statistics are exact whatever the number of minibatches seen.
    """
    if start == 0 or cache is None:
        cache = (torch.zeros(X.shape[0], ensemble.c0.shape[0], device=X.device), None)
    total, middle = cache
    chunks = torch.arange(X.shape[0], device=X.device).split(_CHUNK)
    with torch.no_grad():
        for learner in list(ensemble.learners)[start:]:
            if recalibrate:
                norms = [m for m in learner.modules() if isinstance(m, nn.BatchNorm1d)]
                for m in norms:
                    m.reset_running_stats()
                    m.momentum = None
                learner.train()
                for rows in chunks:
                    learner(X[rows], None if middle is None else middle[rows])
                for m in norms:
                    m.momentum = 0.1
            learner.eval()
            parts = [
                learner(X[rows], None if middle is None else middle[rows])
                for rows in chunks
            ]
            middle = torch.cat([p[0] for p in parts])
            total = total + torch.cat([p[1] for p in parts])
    return total, middle


def fit_grownet(X, Y, X_val, Y_val, loss, params, generator, verbose=0):
    """Run GrowNet boosting; return ``(state, train_scores, val_scores)``.

    ``X``/``Y`` (and optional ``X_val``/``Y_val``) are float32 tensors on the
    target device, ``Y`` of shape (n, n_outputs). Scores are negative losses,
    entry 0 being the constant model ``c0``. With validation data the ensemble
    kept is the one after the best validation stage.
    """
    device = X.device
    n, n_features = X.shape
    batch_size = params["batch_size"]
    if batch_size == "auto":
        batch_size = min(1024, max(128, n // 32))
    ensemble = Ensemble(loss.init(Y), params["boost_rate"]).to(device)
    F, middle = ensemble.c0.expand(n, -1), None
    train_scores = [-float(loss.loss(F, Y))]
    val_scores, best = [], (-math.inf, 0, None)
    if X_val is not None:
        val_scores.append(-float(loss.loss(ensemble.c0.expand(len(X_val), -1), Y_val)))
    adam = {"lr": params["learning_rate"], "weight_decay": params["l2_regularization"]}
    corrective, cache, val_cache = None, None, None
    for stage in range(params["n_estimators"]):
        tic = time.perf_counter()
        learner = _make_learner(
            n_features, params["hidden_units"], Y.shape[1], stage, generator, device
        )
        # Stage fit: second-order Taylor expansion of the loss around the
        # current ensemble output F (frozen, cached): sum_k g*u + h*u^2 / 2
        # with u = alpha * f. Minimiser u = -g/h: the Newton target of the
        # reference (y (1 + exp(-y F)) for the logistic loss, residual for
        # squared error).
        grad, hess = loss.grad_hess(F, Y)
        alpha = ensemble.boost_rate.detach()
        optimizer = _adam(learner.parameters(), **adam)
        learner.train()
        for _ in range(params["epochs_per_stage"]):
            for rows in _batches(n, batch_size, generator, device):
                _, f = learner(X[rows], None if middle is None else middle[rows])
                u = alpha * f
                step = (grad[rows] * u + 0.5 * hess[rows] * u * u).sum(dim=1).mean()
                optimizer.zero_grad(set_to_none=True)
                step.backward()
                optimizer.step()
        ensemble.learners.append(learner)
        # Corrective step: all learners and alpha jointly, on the true loss.
        corrected = stage > 0 and params["corrective_epochs"] > 0
        if corrected:
            ensemble.train()
            # One optimiser for the whole fit, growing with the ensemble: a
            # fresh Adam's first steps move every weight by ~lr whatever its
            # gradient, a perturbation of F that would grow with the number
            # of learners.
            if corrective is None:
                corrective = _adam(ensemble.parameters(), **adam)
            else:
                corrective.add_param_group({"params": list(learner.parameters())})
            for _ in range(params["corrective_epochs"]):
                for rows in _batches(n, batch_size, generator, device):
                    step = loss.loss(ensemble(X[rows]), Y[rows])
                    corrective.zero_grad(set_to_none=True)
                    step.backward()
                    corrective.step()
        # Refresh the cached outputs: all learners after a corrective step
        # (they all changed), else only the new one.
        start = 0 if corrected else stage
        cache = _forward_from(ensemble, X, cache, start, recalibrate=True)
        alpha = ensemble.boost_rate.detach()
        F, middle = ensemble.c0 + alpha * cache[0], cache[1]
        train_scores.append(-float(loss.loss(F, Y)))
        message = f"[GrowNet] stage {stage + 1:3d} train loss {-train_scores[-1]:.5f}"
        if X_val is not None:
            val_cache = _forward_from(ensemble, X_val, val_cache, start)
            val_F = ensemble.c0 + alpha * val_cache[0]
            val_scores.append(-float(loss.loss(val_F, Y_val)))
            message += f" val loss {-val_scores[-1]:.5f}"
            if val_scores[-1] > best[0] + params["tol"] or best[2] is None:
                best = (val_scores[-1], stage + 1, ensemble_state(ensemble))
            elif stage + 1 - best[1] >= params["n_iter_no_change"]:
                if verbose:
                    print(message + " (stopping)")
                break
        if verbose:
            print(
                message + f" alpha {ensemble.boost_rate.item():.4f}"
                f" ({time.perf_counter() - tic:.2f}s)"
            )
    state = best[2] if X_val is not None else ensemble_state(ensemble)
    return state, np.asarray(train_scores), np.asarray(val_scores)
