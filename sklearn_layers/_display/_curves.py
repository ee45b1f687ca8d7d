"""LayerCurveDisplay: score against training-set size, one line per layer (or per head)."""

import numpy as np

from ..utils._optional import import_optional

_LINES = ("layer", "head")
_SCORE_COLUMNS = {
    "score": ("score_low", "score_high"),
    "selectivity": ("selectivity_low", "selectivity_high"),
    "control_score": ("control_low", "control_high"),
}


class LayerCurveDisplay:
    """Learning curves of a layer sweep: the score against the number of training rows.

    Build it with :meth:`from_sweep` from a :func:`layer_sweep` table made with
    ``train_sizes``; the constructor only stores the data. Each line is one
    layer (for one head) or one head (for one layer), with its 95% interval
    as a band; the x axis is logarithmic, as the sizes usually are.

    Parameters
    ----------
    train_sizes : array-like of shape (n_sizes,)
        Training rows of each point, increasing.
    scores : dict of str -> array-like of shape (n_sizes,)
        One curve per line name (a layer, or a head), in drawing order.
    score_low, score_high : dict of str -> array-like of shape (n_sizes,), default=None
        Ends of each point's 95% interval; NaN draws none.
    title : str, default=None
        The axes title (what the lines share: the head and split, or the layer
        and split).
    score_name : str, default="score"
        Label of the score axis.

    Attributes
    ----------
    ax_ : matplotlib Axes
    figure_ : matplotlib Figure
    lines_ : dict of str -> matplotlib Line2D
    bands_ : dict of str -> matplotlib PolyCollection
        The drawn intervals.

    See Also
    --------
    layer_sweep : ``train_sizes=`` computes the table.
    LayerSweepDisplay : The score per layer at one size.
    sklearn.model_selection.LearningCurveDisplay : The same for one estimator.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_layers import LayerCurveDisplay
    >>> display = LayerCurveDisplay(
    ...     train_sizes=[10, 100, 1000],
    ...     scores={"block1": [0.6, 0.7, 0.75], "block2": [0.5, 0.75, 0.9]},
    ... ).plot()
    >>> sorted(display.lines_)
    ['block1', 'block2']
    """

    def __init__(self, *, train_sizes, scores, score_low=None, score_high=None, title=None,
                 score_name="score"):
        self.train_sizes = train_sizes
        self.scores = scores
        self.score_low = score_low
        self.score_high = score_high
        self.title = title
        self.score_name = score_name

    def plot(self, ax=None, *, legend=True, line_kw=None, fill_between_kw=None):
        """Draw the curves.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure when ``None``.
        legend : bool, default=True
            Draw a legend naming each line.
        line_kw, fill_between_kw : dict, default=None
            Passed to ``ax.plot`` and ``ax.fill_between``.

        Returns
        -------
        display : LayerCurveDisplay
            Self, with ``ax_``, ``figure_``, ``lines_`` and ``bands_`` set.
        """
        plt = import_optional("matplotlib.pyplot", purpose="LayerCurveDisplay")
        sizes = np.asarray(self.train_sizes, dtype=float)
        n = len(sizes)
        if ax is None:
            _, ax = plt.subplots(figsize=(7.0, 4.0), layout="constrained")
        names = list(self.scores)
        colours = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, max(len(names), 1)))
        self.lines_, self.bands_ = {}, {}
        for name, colour in zip(names, colours):
            y = self._values(self.scores, name, n)
            (line,) = ax.plot(sizes, y, marker="o", markersize=4, color=colour, label=name,
                              **(line_kw or {}))
            self.lines_[name] = line
            low = self._values(self.score_low, name, n)
            high = self._values(self.score_high, name, n)
            drawn = np.isfinite(low) & np.isfinite(high) & (high > low)
            if drawn.any():
                kw = dict(color=colour, alpha=0.15, linewidth=0)
                kw.update(fill_between_kw or {})
                self.bands_[name] = ax.fill_between(sizes, low, high, where=drawn, **kw)
        ax.set_xscale("log")
        ax.set_xlabel("training rows")
        ax.set_ylabel(self.score_name)
        if self.title:
            ax.set_title(self.title)
        ax.grid(alpha=0.3)
        if legend:
            ax.legend(loc="best", fontsize="small")
        self.ax_, self.figure_ = ax, ax.figure
        return self

    @staticmethod
    def _values(values, name, n):
        given = None if values is None else values.get(name)
        array = np.full(n, np.nan) if given is None else np.asarray(given, dtype=float)
        if array.shape != (n,):
            raise ValueError(
                f"The curve of {name!r} has shape {array.shape}; expected one value per "
                f"training size, shape ({n},)."
            )
        return array

    @classmethod
    def from_sweep(cls, table, *, lines="layer", head=None, layer=None, split=None,
                   score="score", score_name="score", ax=None, **plot_kw):
        """Plot the learning curves of a :func:`layer_sweep` table made with ``train_sizes``.

        Parameters
        ----------
        table : DataFrame or list of dict
            What ``layer_sweep(..., train_sizes=...)`` returned.
        lines : {"layer", "head"}, default="layer"
            One line per layer (of ``head``), or one line per head (on
            ``layer``): where the heads' curves cross.
        head : str, default=None
            With ``lines="layer"``: the head; ``None`` when the table has one.
        layer : str, default=None
            With ``lines="head"``: the layer; ``None`` when the table has one.
        split : str, default=None
            The split; ``None`` when the table has one.
        score : {"score", "selectivity", "control_score"}, default="score"
            The column to draw, with its interval.
        score_name : str, default="score"
            Label of the score axis.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot`.

        Returns
        -------
        display : LayerCurveDisplay
        """
        if lines not in _LINES:
            raise ValueError(f"lines must be one of {_LINES}; got {lines!r}.")
        if score not in _SCORE_COLUMNS:
            raise ValueError(f"score must be one of {tuple(_SCORE_COLUMNS)}; got {score!r}.")
        records = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
        if not records or "train_size" not in records[0]:
            raise ValueError(
                "The table has no train_size column: make it with "
                "layer_sweep(..., train_sizes=[...])."
            )
        if score not in records[0]:
            raise ValueError(f"The table has no {score!r} column: make it with control=True.")
        split = _only(records, "split", split)
        fixed, varying = ("head", "layer") if lines == "layer" else ("layer", "head")
        value = _only(records, fixed, head if fixed == "head" else layer)
        records = [r for r in records if r["split"] == split and r[fixed] == value]
        sizes = sorted({r["train_size"] for r in records})
        order = sorted({(r["layer_index"], r[varying]) for r in records}) if varying == "layer" \
            else [(0, name) for name in dict.fromkeys(r["head"] for r in records)]
        low_col, high_col = _SCORE_COLUMNS[score]
        stores = {score: {}, low_col: {}, high_col: {}}
        for _, name in order:
            for column, store in stores.items():
                store[name] = np.full(len(sizes), np.nan)
        position = {size: i for i, size in enumerate(sizes)}
        for r in records:
            for column, store in stores.items():
                store[r[varying]][position[r["train_size"]]] = r.get(column, np.nan)
        display = cls(train_sizes=sizes, scores=stores[score], score_low=stores[low_col],
                      score_high=stores[high_col], title=f"{value} ({split})",
                      score_name=score_name)
        return display.plot(ax=ax, **plot_kw)


def _only(records, column, given):
    values = list(dict.fromkeys(r[column] for r in records))
    if given is not None:
        if given not in values:
            raise ValueError(f"{column}={given!r} is not in the table; it has {values}.")
        return given
    if len(values) != 1:
        raise ValueError(f"The table has several values of {column}: {values}; pass {column}=.")
    return values[0]
