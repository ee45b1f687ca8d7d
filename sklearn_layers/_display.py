"""LayerSweepDisplay: score per layer, one line per head x split."""

import numpy as np

from .utils._optional import import_optional


def _records(table):
    if hasattr(table, "to_dict"):
        return table.to_dict("records")
    return list(table)


class LayerSweepDisplay:
    """Score per layer, in network order, one line per head x split.

    The best layer of each line is marked with a star. Build it with
    :meth:`from_sweep` (a :func:`layer_sweep` table) or :meth:`from_estimator`
    (a fitted :class:`IntermediateLayerClassifier`); the constructor only stores
    the data.

    Parameters
    ----------
    layers : list of str
        Layer names in network order (the x axis).
    scores : dict of (head, split) -> ndarray of shape (n_layers,)
        One score per layer (NaN where missing).
    errors : dict of (head, split) -> ndarray of shape (n_layers,), default=None
        Standard deviations drawn as bands (e.g. over CV folds).
    score_name : str, default="score"
        Label of the y axis.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.
    lines_ : dict of (head, split) -> matplotlib Line2D
        The plotted lines.

    See Also
    --------
    layer_sweep : Computes the table this display draws.
    sklearn.model_selection.ValidationCurveDisplay : The same style for
        hyper-parameters.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_layers import LayerSweepDisplay
    >>> display = LayerSweepDisplay(
    ...     layers=["block1", "block2", "block3"],
    ...     scores={("logistic", "cv"): [0.7, 0.9, 0.8]}).plot()
    >>> display.ax_.get_xlabel()
    'layer'
    """

    def __init__(self, *, layers, scores, errors=None, score_name="score"):
        self.layers = list(layers)
        self.scores = {k: np.asarray(v, dtype=float) for k, v in scores.items()}
        self.errors = {k: np.asarray(v, dtype=float) for k, v in (errors or {}).items()}
        self.score_name = score_name

    def plot(self, ax=None, *, mark_best=True, line_kw=None):
        """Draw the lines.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        mark_best : bool, default=True
            Put a star on each line's best layer.
        line_kw : dict, default=None
            Passed to ``ax.plot``.

        Returns
        -------
        display : LayerSweepDisplay
            Self, with ``ax_``, ``figure_`` and ``lines_`` set.
        """
        plt = import_optional("matplotlib.pyplot", purpose="LayerSweepDisplay")
        if ax is None:
            _, ax = plt.subplots(figsize=(max(5, 0.7 * len(self.layers) + 2), 4))
        x = np.arange(len(self.layers))
        self.lines_ = {}
        for (head, split), values in self.scores.items():
            style = "--" if split not in ("cv", "id", "in-distribution") else "-"
            (line,) = ax.plot(x, values, style, marker="o", label=f"{head} · {split}",
                              **(line_kw or {}))
            self.lines_[(head, split)] = line
            err = self.errors.get((head, split))
            if err is not None and np.any(err > 0):
                ax.fill_between(x, values - err, values + err, alpha=0.15,
                                color=line.get_color())
            if mark_best and np.any(np.isfinite(values)):
                best = int(np.nanargmax(values))
                ax.plot(x[best], values[best], marker="*", markersize=15,
                        color=line.get_color(), linestyle="none")
        ax.set_xticks(x)
        ax.set_xticklabels(self.layers, rotation=30, ha="right")
        ax.set_xlabel("layer")
        ax.set_ylabel(self.score_name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_sweep(cls, table, *, score_name="score", ax=None, **plot_kw):
        """Plot a :func:`layer_sweep` table.

        Parameters
        ----------
        table : DataFrame or list of dict
            What :func:`layer_sweep` returned.
        score_name : str, default="score"
            Label of the y axis.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerSweepDisplay
        """
        records = _records(table)
        order = sorted({(r["layer_index"], r["layer"]) for r in records})
        layers = [name for _, name in order]
        position = {name: i for i, name in enumerate(layers)}
        scores, errors = {}, {}
        for r in records:
            key = (r["head"], r["split"])
            scores.setdefault(key, np.full(len(layers), np.nan))[position[r["layer"]]] = r["score"]
            errors.setdefault(key, np.zeros(len(layers)))[position[r["layer"]]] = r.get(
                "score_std", 0.0
            )
        return cls(layers=layers, scores=scores, errors=errors,
                   score_name=score_name).plot(ax=ax, **plot_kw)

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, **plot_kw):
        """Plot the layer scores of a fitted :class:`IntermediateLayerClassifier`.

        Parameters
        ----------
        estimator : IntermediateLayerClassifier
            Fitted.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerSweepDisplay
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator, "layer_scores_")
        layers = list(estimator.layer_scores_)
        chosen = estimator.estimator
        head = type(chosen).__name__ if chosen is not None else "logistic"
        split = estimator.selection_
        key = (head, split)
        scores = {key: [estimator.layer_scores_[n] for n in layers]}
        errors = {key: [estimator.layer_score_std_[n] for n in layers]}
        return cls(layers=layers, scores=scores, errors=errors).plot(ax=ax, **plot_kw)
