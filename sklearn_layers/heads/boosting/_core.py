"""GrowNet's networks: the weak learner, the ensemble, and its numpy state.

The ensemble computes ``F(x) = c0 + learning_rate * sum_t f_t(x)``. Learner
``t`` sees the encoded features concatenated with the middle features of
learner ``t - 1``, standardised with statistics fixed when learner ``t`` was
created (on the training rows, weighted). A fixed standardisation instead of
the reference code's BatchNorm makes a learner's output independent of the
batch it is in: outputs cached during training equal the outputs at
prediction, and sample weights act on every statistic (a row of weight 0
changes nothing).
"""

import math

import numpy as np
import sklearn
import torch
from torch import nn
from torch.nn import functional as nnf


class WeakLearner(nn.Module):
    """``[x, previous middle] -> Linear -> LeakyReLU -> Linear -> ReLU -> Linear``.

    The output of the second ``Linear`` (before the ReLU) is the learner's
    *middle features*, passed on to the next learner.
    """

    def __init__(self, n_features, n_hidden, n_outputs, n_previous):
        super().__init__()
        self.register_buffer("previous_shift", torch.zeros(n_previous))
        self.register_buffer("previous_scale", torch.ones(n_previous))
        self.hidden = nn.Linear(n_features + n_previous, n_hidden)
        self.middle = nn.Linear(n_hidden, n_hidden)
        self.out = nn.Linear(n_hidden, n_outputs)

    def inputs(self, x, previous_middle):
        """The learner's input: ``x`` and the standardised previous middle features."""
        if previous_middle is None:
            return x
        scaled = (previous_middle - self.previous_shift) * self.previous_scale
        return torch.cat([x, scaled], dim=1)

    def head(self, inputs):
        """``(middle, output)`` from :meth:`inputs`."""
        return self._rest(self.hidden(inputs))

    def forward(self, x, previous_middle):
        """``(middle, output)``: :meth:`head` of :meth:`inputs`, without building the inputs.

        The standardisation of the previous middle features is folded into
        the first layer's weights, and the two blocks of the input go through
        two products instead of being concatenated: the same function, less
        memory traffic (the concatenation cost more than its product).
        """
        if previous_middle is None:
            return self.head(x)
        n_features = x.shape[1]
        weight = self.hidden.weight
        previous_weight = weight[:, n_features:] * self.previous_scale
        bias = self.hidden.bias - previous_weight @ self.previous_shift
        hidden = torch.addmm(bias, x, weight[:, :n_features].T)
        hidden = hidden.addmm_(previous_middle, previous_weight.T)
        return self._rest(hidden)

    def _rest(self, hidden):
        """``(middle, output)`` from the first layer's pre-activation."""
        middle = self.middle(nnf.leaky_relu(hidden, 0.1))
        return middle, self.out(nnf.relu(middle))


def make_learner(n_features, n_hidden, n_outputs, previous_middle, weights, generator):
    """A new learner, initialised from ``generator`` only.

    Its weights follow PyTorch's default ``nn.Linear`` initialisation,
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, drawn from ``generator`` so that
    torch's global generator is never used. ``previous_middle`` (the middle
    features of the previous learner on the training rows, or ``None`` for the
    first learner) and ``weights`` give the standardisation of its input.
    """
    device = weights.device
    n_previous = 0 if previous_middle is None else previous_middle.shape[1]
    with torch.device("meta"):
        learner = WeakLearner(n_features, n_hidden, n_outputs, n_previous)
    learner = learner.to_empty(device=device)
    with torch.no_grad():
        for module in (learner.hidden, learner.middle, learner.out):
            bound = 1.0 / math.sqrt(module.in_features)
            for param in (module.weight, module.bias):
                u = torch.rand(param.shape, generator=generator).to(device)
                param.copy_((2 * u - 1) * bound)
        learner.previous_shift.zero_()
        learner.previous_scale.fill_(1.0)
        if previous_middle is not None:
            p = (weights / weights.sum())[:, None]
            mean = (p * previous_middle).sum(dim=0)
            std = (p * (previous_middle - mean) ** 2).sum(dim=0).sqrt()
            learner.previous_shift.copy_(mean)
            learner.previous_scale.copy_(1.0 / std.clamp_min(1e-6))
    return learner


class Ensemble(nn.Module):
    """``F(x) = c0 + learning_rate * sum_t f_t(x)`` over a growing list of learners."""

    def __init__(self, c0, learning_rate):
        super().__init__()
        self.learners = nn.ModuleList()
        self.register_buffer("c0", torch.as_tensor(c0, dtype=torch.float32))
        self.learning_rate = float(learning_rate)

    def forward_from(self, start, x, base, previous_middle):
        """``F`` from learner ``start`` on, given what the earlier ones give.

        ``base`` is ``c0 + learning_rate * sum_{t < start} f_t(x)`` and
        ``previous_middle`` the middle features of learner ``start - 1``
        (``None`` when ``start == 0``). Returns ``(F, last middle features)``.
        """
        total, middle = 0.0, previous_middle
        for learner in self.learners[start:]:
            middle, f = learner(x, middle)
            total = total + f
        return base + self.learning_rate * total, middle

    @torch.no_grad()
    def staged(self, x):
        """Yield ``F`` after each learner (no autograd)."""
        F, middle = self.c0.expand(x.shape[0], -1), None
        for learner in self.learners:
            middle, f = learner(x, middle)
            F = F + self.learning_rate * f
            yield F


@torch.no_grad()
def chunked_pass(learner, x, previous_middle):
    """``learner(x, previous_middle)`` without autograd, in chunks of rows.

    Chunks follow scikit-learn's ``working_memory`` (see
    :func:`sklearn.set_config`); the result is the same whatever their size.
    """
    n_hidden = learner.middle.out_features
    row_bytes = 4 * (learner.hidden.in_features + 3 * n_hidden + learner.out.out_features)
    budget = sklearn.get_config()["working_memory"] * 2**20
    size = int(min(x.shape[0], max(1, budget // row_bytes)))
    parts = [
        learner(x[i : i + size], None if previous_middle is None else previous_middle[i : i + size])
        for i in range(0, x.shape[0], size)
    ]
    if len(parts) == 1:
        return parts[0]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def learner_state(learner):
    """A CPU numpy copy of one learner's tensors."""
    return {k: v.detach().cpu().numpy().copy() for k, v in learner.state_dict().items()}


def build_ensemble(state, device="cpu", dtype=torch.float64):
    """An :class:`Ensemble` from its numpy state (``c0``, ``learning_rate``, learners)."""
    ensemble = Ensemble(state["c0"], state["learning_rate"])
    for tensors in state["learners"]:
        n_hidden, n_in = tensors["hidden.weight"].shape
        n_previous = tensors["previous_shift"].shape[0]
        n_outputs = tensors["out.weight"].shape[0]
        with torch.device("meta"):
            learner = WeakLearner(n_in - n_previous, n_hidden, n_outputs, n_previous)
        learner.load_state_dict(
            {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()}, assign=True
        )
        ensemble.learners.append(learner)
    return ensemble.to(device=device, dtype=dtype).eval()
