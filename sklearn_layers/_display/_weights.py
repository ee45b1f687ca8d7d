"""LayerWeightsDisplay: the learned weight of each layer of a weighted fusion."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..utils._optional import import_optional


class LayerWeightsDisplay:
    """Bar chart of the softmax weight of each layer, in network order.

    Build it with :meth:`from_estimator` (a :class:`LayerFusionClassifier`
    fitted with ``fusion=WeightedFusion()``); the constructor only stores the data.
    A dashed line marks the uniform weight ``1 / n_layers``.

    Parameters
    ----------
    layers : list of str
        Layer names in network order (the x axis).
    weights : array-like of shape (n_layers,)
        One weight per layer.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.
    bars_ : matplotlib BarContainer
        The bars, one per layer.

    See Also
    --------
    WeightedFusion : Learns the weights (``fusion_.layer_weights_``).
    LayerSweepDisplay : Score per layer of single-layer probes.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_layers import LayerWeightsDisplay
    >>> display = LayerWeightsDisplay(layers=["block1", "block2", "block3"],
    ...                               weights=[0.2, 0.5, 0.3]).plot()
    >>> [round(float(bar.get_height()), 1) for bar in display.bars_]
    [0.2, 0.5, 0.3]
    """

    def __init__(self, *, layers, weights):
        self.layers = list(layers)
        self.weights = np.asarray(weights, dtype=float)
        if self.weights.shape != (len(self.layers),):
            raise ValueError(
                f"weights must hold one value per layer ({len(self.layers)}); got "
                f"shape {self.weights.shape}."
            )

    def plot(self, ax=None, *, bar_kw=None):
        """Draw the bars.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        bar_kw : dict, default=None
            Passed to ``ax.bar``.

        Returns
        -------
        display : LayerWeightsDisplay
            Self, with ``ax_``, ``figure_`` and ``bars_`` set.
        """
        plt = import_optional("matplotlib.pyplot", purpose="LayerWeightsDisplay")
        if ax is None:
            _, ax = plt.subplots(figsize=(max(5, 0.7 * len(self.layers) + 2), 4))
        x = np.arange(len(self.layers))
        self.bars_ = ax.bar(x, self.weights, **(bar_kw or {}))
        ax.axhline(1.0 / len(self.layers), linestyle="--", color="grey", linewidth=1,
                   label="uniform")
        ax.set_xticks(x)
        ax.set_xticklabels(self.layers, rotation=30, ha="right")
        ax.set_xlabel("layer")
        ax.set_ylabel("layer weight")
        ax.legend(fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **plot_kw):
        """Plot the layer weights of a fitted weighted fusion.

        Parameters
        ----------
        estimator : LayerFusionClassifier
            Fitted with ``fusion=WeightedFusion()``.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerWeightsDisplay
        """
        check_is_fitted(estimator)
        fusion = estimator.fusion_
        if not hasattr(fusion, "layer_weights_"):
            raise ValueError(
                f"{type(estimator).__name__}'s fusion has no layer_weights_: only "
                f"WeightedFusion learns layer weights (this one is "
                f"{type(fusion).__name__})."
            )
        return cls(layers=estimator.layer_names_, weights=fusion.layer_weights_).plot(
            ax=ax, **plot_kw
        )
