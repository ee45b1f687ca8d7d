"""The extractor a layer-level estimator takes: a ``LayerFeatureTransformer``.

Selectors (the ILC, the fusion classifier, early exit, ``layer_sweep``,
``layer_metrics``) take the extractor itself, as scikit-learn's meta-estimators
take an estimator: every extraction setting (pooling, tokenizer, preprocess,
cache, batch size, device, threads, ...) lives once, on the extractor, and a
grid reaches it as ``extractor__pooling``. The candidate layers stay on the
selector. A bare network is shorthand for ``LayerFeatureTransformer(network)``.
"""

from sklearn.base import clone

from .._transformer import LayerFeatureTransformer


def resolve_extractor(extractor, layers, **params):
    """A fresh, unfitted extractor over ``layers``, built from the user's.

    Parameters
    ----------
    extractor : LayerFeatureTransformer or torch.nn.Module, FrozenModel, skorch net or callable
        The user's extractor, never changed or fitted in place: it is cloned
        (the clone shares the network, the tokenizer and the cache by
        reference). Anything else is the network of a default
        :class:`~sklearn_layers.LayerFeatureTransformer`, which validates it
        when fitted.
    layers : layer spec
        The layers the returned extractor extracts (see
        :class:`~sklearn_layers.LayerFeatureTransformer`).
    **params
        Other parameters of the returned extractor (e.g. ``prefetch=False``
        for one that deploys a chosen layer).

    Returns
    -------
    extractor : LayerFeatureTransformer
        Unfitted, returning numpy arrays whatever the caller's output config.
    """
    if isinstance(extractor, LayerFeatureTransformer):
        resolved = clone(extractor)
    else:
        resolved = LayerFeatureTransformer(extractor)
    return resolved.set_params(layers=layers, **params).set_output(transform="default")


def clone_selector(selector):
    """Clone a selector whose ``extractor`` may be a bare network.

    ``sklearn.clone`` deep-copies a parameter that is not an estimator: a bare
    network would be copied for every candidate and fold of a grid search. A
    :class:`~sklearn_layers.LayerFeatureTransformer` is cloned (it shares its
    network itself); anything else (a module, a model handle, a fitted skorch
    net, a factory) is kept by reference, as
    ``sklearn.frozen.FrozenEstimator`` keeps its estimator.
    """
    params = selector.get_params(deep=False)
    extractor = params.pop("extractor")
    if isinstance(extractor, LayerFeatureTransformer):
        extractor = clone(extractor)
    cloned = {name: clone(value, safe=False) for name, value in params.items()}
    return type(selector)(extractor, **cloned)
