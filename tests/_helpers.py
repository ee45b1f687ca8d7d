"""Small test utilities shared by several test files."""

import torch


class RowCounter:
    """A forward pre-hook that sums the rows reaching ``module``.

    A hook is part of a model's cache identity (it may change what the model
    returns), so register the counter before the first extraction that a test
    compares against, and read the rows since a point with :meth:`take`.
    """

    def __init__(self, module):
        self.rows = 0
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.rows += args[0].shape[0]

    def take(self):
        """Rows counted since the last call (or since creation)."""
        rows, self.rows = self.rows, 0
        return rows

    def remove(self):
        self.handle.remove()


def snapshot(model):
    """Everything the package promises never to change about a network."""
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": [m.training for m in model.modules()],
        "grad": [p.requires_grad for p in model.parameters()],
        "hooks": [
            (len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()
        ],
        "devices": [p.device for p in model.parameters()],
    }


def assert_unchanged(model, before):
    after = snapshot(model)
    assert before["training"] == after["training"]
    assert before["grad"] == after["grad"]
    assert before["hooks"] == after["hooks"]
    assert before["devices"] == after["devices"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
