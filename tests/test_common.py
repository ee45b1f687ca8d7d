"""scikit-learn's estimator checks for the network-side estimators."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from sklearn_layers import (
    IntermediateLayerClassifier,
    LayerFeatureTransformer,
    LayerFusionClassifier,
)
from sklearn_layers.utils.toy import make_mlp


def expected_failed_checks(estimator):
    if isinstance(estimator, LayerFusionClassifier) and estimator.fusion != "weighted":
        return {
            "check_non_transformer_estimators_n_iter": (
                "max_iter is the L-BFGS budget of fusion='weighted'; 'concat' and "
                "'stack' run no iterations of their own, so they have no n_iter_."
            )
        }
    return {}


def toy_mlp(n_features):
    """A factory the transformer calls at fit with the data's width."""
    return make_mlp(n_features, hidden=(5,), n_outputs=3)


@parametrize_with_checks(
    [
        LayerFeatureTransformer(toy_mlp, layers="all", cache=None),
        LayerFeatureTransformer(toy_mlp, layers=[0, "output"], pooling="max"),
        IntermediateLayerClassifier(toy_mlp, cv=3),
        LayerFusionClassifier(toy_mlp, random_state=0),
        LayerFusionClassifier(toy_mlp, fusion="concat"),
        LayerFusionClassifier(toy_mlp, fusion="stack", cv=3),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
