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


def resolve_extractor(extractor, layers):
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

    Returns
    -------
    extractor : LayerFeatureTransformer
        Unfitted, returning numpy arrays whatever the caller's output config.
    """
    if isinstance(extractor, LayerFeatureTransformer):
        resolved = clone(extractor)
    else:
        resolved = LayerFeatureTransformer(extractor)
    return resolved.set_params(layers=layers).set_output(transform="default")
