"""Model adapter: the ``nn.Module`` behind whatever a user passes as ``model``."""

import inspect

from torch import nn


def resolve_module(model, n_features_in=None):
    """Return the ``nn.Module`` behind ``model``.

    Parameters
    ----------
    model : nn.Module, FrozenModel, fitted skorch net, object with a ``module`` \
            attribute, or callable
        A module is used as is (by reference). A fitted skorch ``NeuralNet``
        gives its ``module_``. An object exposing an ``nn.Module`` as ``module``
        (a :class:`~sklearn_layers.FrozenModel`, which loads it once per
        process) gives that. Any other callable is a factory, called as
        ``model(n_features_in)`` when it takes an argument and ``model()``
        otherwise; it must return an ``nn.Module``.
    n_features_in : int, default=None
        Passed to a factory.

    Returns
    -------
    module : torch.nn.Module
    """
    if isinstance(model, nn.Module):
        return model
    for attribute in ("module_", "module"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module):
            return inner
    if hasattr(model, "initialize") and hasattr(model, "module"):
        raise ValueError(
            f"The skorch net {type(model).__name__} is not fitted (it has no "
            "module_); fit or initialize() it before extracting its layers."
        )
    if callable(model):
        try:
            takes_argument = bool(inspect.signature(model).parameters)
        except (TypeError, ValueError):
            takes_argument = False
        built = model(n_features_in) if takes_argument else model()
        if not isinstance(built, nn.Module):
            raise TypeError(
                f"The model factory {model!r} returned {type(built).__name__}, not a "
                "torch.nn.Module."
            )
        return built
    raise TypeError(
        "model must be a torch.nn.Module, a fitted skorch net, a model handle or a "
        f"factory returning a module; got {type(model).__name__}."
    )
