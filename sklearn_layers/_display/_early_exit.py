"""EarlyExitDisplay: the compute-accuracy curve of early exit, beside each single layer."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..utils._optional import import_optional
from ._pareto import pareto_front

DEFAULT_DROPS = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)


class EarlyExitDisplay:
    """Accuracy against forward cost: the early-exit curve and every single layer.

    Build it with :meth:`from_estimator`; the constructor only stores the
    data. Each point of the curve is the cascade calibrated for one
    ``max_score_drop``; each single layer is its own exit head used alone
    (cost: that layer's share of the forward pass). As in the cost view of
    :class:`LayerSweepDisplay`, the single layers' Pareto front is a
    staircase (the best accuracy a cost budget buys with one layer) and the
    layers off it are hollow: the curve beats one layer where it runs above
    that staircase.

    Parameters
    ----------
    costs : array-like of shape (n_points,)
        Mean share of a full forward pass per row of each curve point.
    scores : array-like of shape (n_points,)
        Accuracy of each curve point.
    max_score_drops : array-like of shape (n_points,)
        The ``max_score_drop`` each point was calibrated for.
    layers : list of str
        The exits, in forward order.
    layer_costs : array-like of shape (n_layers,)
        Share of a full forward pass to reach each exit.
    layer_scores : array-like of shape (n_layers,)
        Accuracy of each exit's head alone.
    cost_name : str, default="share of forward FLOPs"
        x-axis label.
    score_name : str, default="accuracy"
        y-axis label.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.
    line_ : matplotlib Line2D
        The early-exit curve.
    pareto_front_ : list of str
        The single layers on their Pareto front, cheapest first.

    See Also
    --------
    EarlyExitClassifier : The classifier whose curve this is.
    LayerSweepDisplay : Score per layer; ``kind="cost"`` is the same cost view.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_layers import EarlyExitDisplay
    >>> display = EarlyExitDisplay(
    ...     costs=[0.4, 0.6], scores=[0.90, 0.93], max_score_drops=[0.02, 0.0],
    ...     layers=["a", "b", "c"], layer_costs=[0.3, 0.7, 1.0],
    ...     layer_scores=[0.85, 0.93, 0.92]).plot()
    >>> display.pareto_front_
    ['a', 'b']
    """

    def __init__(self, *, costs, scores, max_score_drops, layers, layer_costs, layer_scores,
                 cost_name="share of forward FLOPs", score_name="accuracy"):
        self.costs = np.asarray(costs, dtype=float)
        self.scores = np.asarray(scores, dtype=float)
        self.max_score_drops = np.asarray(max_score_drops, dtype=float)
        self.layers = list(layers)
        self.layer_costs = np.asarray(layer_costs, dtype=float)
        self.layer_scores = np.asarray(layer_scores, dtype=float)
        self.cost_name = cost_name
        self.score_name = score_name
        if not (self.costs.shape == self.scores.shape == self.max_score_drops.shape):
            raise ValueError("costs, scores and max_score_drops must have one value per "
                             f"point; got shapes {self.costs.shape}, {self.scores.shape} "
                             f"and {self.max_score_drops.shape}.")
        if not (self.layer_costs.shape == self.layer_scores.shape == (len(self.layers),)):
            raise ValueError("layer_costs and layer_scores must have one value per layer "
                             f"({len(self.layers)}).")

    def plot(self, ax=None, *, annotate=True, curve_kw=None, layer_kw=None):
        """Draw the curve and the single layers.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        annotate : bool, default=True
            Write each curve point's ``max_score_drop`` and each layer's name.
        curve_kw : dict, default=None
            Passed to ``ax.plot`` for the early-exit curve.
        layer_kw : dict, default=None
            Passed to ``ax.plot`` for the single layers' Pareto front.

        Returns
        -------
        display : EarlyExitDisplay
            Self, with ``ax_``, ``figure_``, ``line_`` and ``pareto_front_`` set.
        """
        plt = import_optional("matplotlib.pyplot", purpose="EarlyExitDisplay")
        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5), layout="constrained")
        on_front = pareto_front(self.layer_costs, self.layer_scores)
        front = np.flatnonzero(on_front)
        front = front[np.argsort(self.layer_costs[front], kind="stable")]
        self.pareto_front_ = [self.layers[i] for i in front]
        ax.plot(self.layer_costs[front], self.layer_scores[front], drawstyle="steps-post",
                marker="o", markersize=5, label="single layer (Pareto front)",
                **{"color": "tab:grey", **(layer_kw or {})})
        off = np.flatnonzero(~on_front & np.isfinite(self.layer_costs)
                             & np.isfinite(self.layer_scores))
        if off.size:
            ax.plot(self.layer_costs[off], self.layer_scores[off], linestyle="none",
                    marker="o", markersize=5, markerfacecolor="none", color="tab:grey",
                    label="single layer (dominated)")
        order = np.argsort(self.costs, kind="stable")
        (self.line_,) = ax.plot(self.costs[order], self.scores[order], marker="s",
                                markersize=5, label="early exit",
                                **{"color": "tab:blue", **(curve_kw or {})})
        if annotate:
            for name, c, s in zip(self.layers, self.layer_costs, self.layer_scores):
                if np.isfinite(c) and np.isfinite(s):
                    ax.annotate(name, (c, s), textcoords="offset points", xytext=(3, -9),
                                fontsize="x-small", color="tab:grey")
            for drop, c, s in zip(self.max_score_drops, self.costs, self.scores):
                ax.annotate(f"{drop:g}", (c, s), textcoords="offset points",
                            xytext=(3, 4), fontsize="x-small", color="tab:blue")
        ax.set_xlabel(self.cost_name)
        ax.set_ylabel(self.score_name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, estimator, X=None, y=None, *, max_score_drops=DEFAULT_DROPS,
                       ax=None, **plot_kw):
        """The curve of a fitted :class:`EarlyExitClassifier`.

        For each ``max_score_drop``, thresholds are calibrated on the
        estimator's held-out calibration rows, as ``fit`` does. Without ``X``
        the points and the single layers are measured on those same rows
        (optimistic for the curve: its thresholds were tuned there); with
        ``X`` and ``y`` they are measured on them, every exit extracted in
        one full forward pass per row through the estimator's extractor (and
        its cache).

        Parameters
        ----------
        estimator : EarlyExitClassifier
            Fitted.
        X : input, default=None
            Rows to measure on (e.g. a test set).
        y : array-like of shape (n_samples,), default=None
            Their labels.
        max_score_drops : sequence of float, default=(0, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)
            One curve point each.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot`.

        Returns
        -------
        display : EarlyExitDisplay
        """
        from .._selection._early_exit import exit_table
        from .._selection._exit_thresholds import tradeoff_curve

        check_is_fitted(estimator)
        if (X is None) != (y is None):
            raise ValueError("Pass both X and y, or neither.")
        evaluation = None if X is None else exit_table(estimator, X, y)
        conf, correct = estimator.calibration_confidences_, estimator.calibration_correct_
        scores, costs = tradeoff_curve(conf, correct, estimator.exit_costs_,
                                       estimator.reference_score_, max_score_drops,
                                       evaluation=evaluation)
        measured = correct if evaluation is None else evaluation[1]
        unit = getattr(estimator, "cost_unit_", "flops")
        return cls(
            costs=costs, scores=scores, max_score_drops=max_score_drops,
            layers=estimator.exit_layers_, layer_costs=estimator.exit_costs_,
            layer_scores=np.asarray(measured, bool).mean(axis=0),
            cost_name=("share of forward FLOPs" if unit == "flops"
                       else "share of forward time"),
        ).plot(ax=ax, **plot_kw)
