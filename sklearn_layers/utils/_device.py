"""One rule for a ``device`` parameter: the transformer's and the heads'."""

import torch


def resolve_device(device, model=None):
    """The torch device a ``device`` parameter names.

    Parameters
    ----------
    device : str, torch.device or None
        ``None`` leaves things where they are: the device of `model`'s
        weights (as skorch's ``device=None``), the CPU when there is no model
        or it has no weights (a head's data is numpy, on the CPU).
    model : torch.nn.Module or None, default=None
        The network whose weights must be on `device` (never moved here).

    Returns
    -------
    device : torch.device

    Raises
    ------
    ValueError
        When `device` names no torch device, names an accelerator this
        machine does not have, or differs from where `model`'s weights are.
    """
    weights = None if model is None else next(iter(model.parameters()), None)
    if device is None:
        return weights.device if weights is not None else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"Unknown device={device!r}: not a torch device ({exc})."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available on this machine.")
    if weights is not None and weights.device.type != resolved.type:
        raise ValueError(
            f"The model's weights are on {weights.device} but device={device!r}. "
            "Move the model yourself (it is never moved for you), set device to "
            f"{str(weights.device)!r}, or set device=None to use wherever the weights are."
        )
    return resolved
