"""scikit-learn's estimator checks for the network-side estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_layers import (
    ConcatFusion,
    IntermediateLayerClassifier,
    IntermediateLayerRegressor,
    LayerFeatureTransformer,
    LayerFusionClassifier,
    StackingFusion,
    WeightedFusion,
)
from sklearn_layers.utils.toy import make_mlp


def toy_mlp(n_features):
    """A factory the transformer calls at fit with the data's width."""
    return make_mlp(n_features, hidden=(5,), n_outputs=3)


def wide_mlp(n_features):
    """Random features wide enough for a linear fit of the checks' regression
    data (check_regressors_train wants a training r2 above 0.5; five random
    ReLU units cannot carry a 10-feature linear target)."""
    return make_mlp(n_features, hidden=(64,), n_outputs=1)


@parametrize_with_checks(
    [
        LayerFeatureTransformer(toy_mlp, layers="all", cache=None),
        LayerFeatureTransformer(toy_mlp, layers=[0, "output"], pooling="max"),
        IntermediateLayerClassifier(toy_mlp, cv=3),
        IntermediateLayerClassifier(LayerFeatureTransformer(toy_mlp, pooling="max"), cv=3),
        IntermediateLayerRegressor(wide_mlp, cv=3),
        LayerFusionClassifier(toy_mlp, fusion=WeightedFusion(random_state=0)),
        LayerFusionClassifier(toy_mlp, fusion=ConcatFusion()),
        LayerFusionClassifier(toy_mlp, fusion=StackingFusion(cv=3)),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
