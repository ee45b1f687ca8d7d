"""LayerSweepDisplay: the score of each layer, along the network or against its cost."""

import math
from numbers import Real

import numpy as np

from ..utils._optional import import_optional
from ._pareto import pareto_front

_KINDS = ("layer", "cost")
_INTERVAL_STYLES = ("errorbar", "fill_between", None)
_COSTS = ("forward_share", "seconds_per_row")
_REQUIRED = ("layer", "layer_index", "head", "split", "score")
_GREY = "0.3"


def _records(table):
    if hasattr(table, "to_dict"):
        return table.to_dict("records")
    return list(table)


def _cost_name(cost, unit):
    if cost == "seconds_per_row":
        return "extraction time per row (s, early exit)"
    counted = {"flops": "FLOPs", "time": "time"}.get(unit, unit)
    return f"share of a full forward pass ({counted})"


def _head_name(selector):
    """The name of a fitted selector's head, as :func:`layer_sweep` names its default.

    ``"logistic"`` (``"ridge"`` for a regressor) for the default probe, else
    the estimator's class name (its last step's for a pipeline).
    """
    from sklearn.base import is_regressor

    estimator = selector.estimator
    if estimator is None:
        return "ridge" if is_regressor(selector) else "logistic"
    if hasattr(estimator, "steps"):
        estimator = estimator.steps[-1][1]
    return type(estimator).__name__


class LayerSweepDisplay:
    """The score of each layer, one line per head x split, with its 95% interval.

    Two views of the same data (:meth:`plot`'s ``kind``): ``"layer"`` draws
    the score of each layer in network order; ``"cost"`` draws it against the
    layer's cost (the share of a full forward pass spent to reach it) with the
    Pareto front of each line -- the layers no cheaper layer matches. Each head
    has one colour and each split one line style (in-distribution splits
    solid); a star marks each line's best (or chosen) layer; an optional
    horizontal line marks the chance level. One legend, outside the data area,
    explains colours, line styles and markers, each once.

    Build it with :meth:`from_sweep` (a :func:`layer_sweep` table) or
    :meth:`from_estimator` (a fitted :class:`IntermediateLayerClassifier` or
    :class:`IntermediateLayerRegressor`); the
    constructor only stores the data. Several displays drawn on one axes share
    its colours, line styles and legend: a head keeps its colour.

    Parameters
    ----------
    layers : list of str
        Layer names in network order.
    scores : dict of (head, split) -> array-like of shape (n_layers,)
        One score per layer (NaN where missing).
    score_low, score_high : dict of (head, split) -> array-like of shape (n_layers,), \
default=None
        Ends of each score's 95% interval; NaN (or ``score_low == score_high``)
        draws no interval at that layer.
    costs : array-like of shape (n_layers,), default=None
        Cost of each layer, the x axis of ``kind="cost"`` (lower is cheaper).
    cost_name : str, default="cost"
        Label of that axis.
    chance_level : float or dict of str -> float, default=None
        Score of guessing, drawn as a grey horizontal line: one number for
        every split, or one per split (drawn in that split's line style). For
        accuracy, the majority-class rate of the evaluation rows (or
        ``1 / n_classes`` when classes are balanced).
    chosen_layers : dict of (head, split) -> str, default=None
        The layer to star on each line, labelled "chosen layer" in the legend.
        ``None`` stars each line's highest score (the first one on ties),
        labelled "best layer".
    score_name : str, default="score"
        Label of the score axis.

    Attributes
    ----------
    ax_ : matplotlib Axes
        Axes with the plot.
    figure_ : matplotlib Figure
        Figure containing the plot.
    lines_ : dict of (head, split) -> matplotlib Line2D
        The score line of each head x split (``kind="layer"``), or its Pareto
        front (``kind="cost"``).
    intervals_ : dict of (head, split) -> matplotlib ErrorbarContainer or PolyCollection
        The drawn 95% intervals (lines with at least one interval of positive
        width).
    best_markers_ : dict of (head, split) -> matplotlib Line2D
        The star on each line's best or chosen layer.
    chance_level_ : list of matplotlib Line2D
        The chance-level lines (empty without ``chance_level``).
    pareto_front_ : dict of (head, split) -> list of str
        With ``kind="cost"``: the layers on each line's Pareto front, cheapest
        first.
    legend_ : matplotlib Legend or None
        The legend (``None`` with ``legend=False``).

    See Also
    --------
    layer_sweep : Computes the table this display draws.
    IntermediateLayerClassifier : Chooses a layer by the same scores.
    sklearn.model_selection.ValidationCurveDisplay : The same style for a
        hyper-parameter.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sklearn_layers import LayerSweepDisplay
    >>> display = LayerSweepDisplay(
    ...     layers=["block1", "block2", "block3"],
    ...     scores={("logistic", "test"): [0.70, 0.90, 0.88]},
    ...     score_low={("logistic", "test"): [0.65, 0.86, 0.84]},
    ...     score_high={("logistic", "test"): [0.75, 0.93, 0.92]},
    ...     costs=[0.2, 0.5, 1.0], cost_name="share of the forward pass",
    ...     chance_level=0.5, score_name="accuracy",
    ... ).plot()
    >>> [text.get_text() for text in display.legend_.get_texts()]
    ['logistic', 'test', '95% interval', 'best layer', 'chance level']
    >>> display.plot(kind="cost").pareto_front_
    {('logistic', 'test'): ['block1', 'block2']}
    """

    def __init__(
        self,
        *,
        layers,
        scores,
        score_low=None,
        score_high=None,
        costs=None,
        cost_name="cost",
        chance_level=None,
        chosen_layers=None,
        score_name="score",
    ):
        self.layers = layers
        self.scores = scores
        self.score_low = score_low
        self.score_high = score_high
        self.costs = costs
        self.cost_name = cost_name
        self.chance_level = chance_level
        self.chosen_layers = chosen_layers
        self.score_name = score_name

    def _per_line(self, values, name):
        """``values`` as float arrays of shape (n_layers,), NaN where not given."""
        n = len(self.layers)
        out = {}
        for key in self.scores:
            given = None if values is None else values.get(key)
            array = np.full(n, np.nan) if given is None else np.asarray(given, float)
            if array.shape != (n,):
                raise ValueError(
                    f"{name}[{key!r}] has shape {array.shape}; expected one value per "
                    f"layer, shape ({n},)."
                )
            out[key] = array
        return out

    def _check_plot_args(self, kind, interval_style):
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}; got {kind!r}.")
        if interval_style not in _INTERVAL_STYLES:
            raise ValueError(
                f"interval_style must be one of {_INTERVAL_STYLES}; "
                f"got {interval_style!r}."
            )
        for key in self.scores:
            if not (isinstance(key, tuple) and len(key) == 2):
                raise ValueError(
                    f"scores must be keyed by (head, split) tuples; got {key!r}."
                )
        if kind == "cost":
            if self.costs is None:
                raise ValueError(
                    "kind='cost' needs the cost of each layer: build the display with "
                    "costs= (from_sweep and from_estimator set it)."
                )
            costs = np.asarray(self.costs, dtype=float)
            if costs.shape != (len(self.layers),):
                raise ValueError(
                    f"costs has shape {costs.shape}; expected one cost per layer, "
                    f"shape ({len(self.layers)},)."
                )

    def plot(
        self,
        ax=None,
        *,
        kind="layer",
        interval_style="errorbar",
        dodge=0.2,
        mark_best=True,
        legend=True,
        line_kw=None,
        errorbar_kw=None,
        fill_between_kw=None,
        chance_level_kw=None,
    ):
        """Draw the scores.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw on; a new figure (with room for the legend) when
            ``None``.
        kind : {"layer", "cost"}, default="layer"
            ``"layer"``: layers on the x axis in network order.
            ``"cost"``: each layer's cost on the x axis (the layer names on the
            top axis); each line is the Pareto front of its head x split, a
            staircase through the layers that no cheaper layer matches (the
            best score a cost budget buys); layers off the front are hollow
            markers.
        interval_style : {"errorbar", "fill_between"} or None, default="errorbar"
            How the 95% intervals are drawn; ``None`` draws none.
        dodge : float, default=0.2
            With error bars in the layer view, the lines are spread over this
            width (in layers) so that their bars do not hide each other; 0
            draws every line at the layer's position.
        mark_best : bool, default=True
            Star each line's best (or chosen) layer.
        legend : bool, default=True
            Draw the legend right of the data area. With ``False`` the legend
            entries are still on the axes, for a figure legend:
            ``figure.legend(*ax.get_legend_handles_labels())``.
        line_kw : dict, default=None
            Passed to ``ax.plot`` for the score lines.
        errorbar_kw : dict, default=None
            Passed to ``ax.errorbar`` for the intervals.
        fill_between_kw : dict, default=None
            Passed to ``ax.fill_between`` for the intervals.
        chance_level_kw : dict, default=None
            Passed to ``ax.axhline`` for the chance level.

        Returns
        -------
        display : LayerSweepDisplay
            Self, with ``ax_``, ``figure_``, ``lines_``, ``intervals_``,
            ``best_markers_``, ``chance_level_``, ``legend_`` (and
            ``pareto_front_`` for ``kind="cost"``) set.
        """
        self._check_plot_args(kind, interval_style)
        plt = import_optional("matplotlib.pyplot", purpose="LayerSweepDisplay")
        from . import _legend

        layers = list(self.layers)
        scores = self._per_line(self.scores, "scores")
        low = self._per_line(self.score_low, "score_low")
        high = self._per_line(self.score_high, "score_high")
        if ax is None:
            width = 7.0 if kind == "cost" else max(5.0, 0.6 * len(layers) + 2.0)
            _, ax = plt.subplots(figsize=(width + 2.0, 4.0), layout="constrained")
        keys = list(scores)
        colours = _legend.head_colours(ax, list(dict.fromkeys(h for h, _ in keys)))
        styles = _legend.split_styles(ax, list(dict.fromkeys(s for _, s in keys)))

        if kind == "layer":
            x = np.arange(len(layers), dtype=float)
            spread = dodge if interval_style == "errorbar" and len(keys) > 1 else 0.0
            offsets = np.linspace(-spread / 2, spread / 2, len(keys))
            positions = {key: x + offset for key, offset in zip(keys, offsets)}
        else:
            costs = np.asarray(self.costs, dtype=float)
            positions = dict.fromkeys(keys, costs)

        self.lines_, self.intervals_, self.best_markers_ = {}, {}, {}
        if kind == "cost":
            self.pareto_front_ = {}
        else:  # not left over from an earlier cost view
            vars(self).pop("pareto_front_", None)
        for key in keys:
            head, split = key
            style = dict(color=colours[head], linestyle=styles[split])
            xs, y = positions[key], scores[key]
            if kind == "layer":
                (line,) = ax.plot(xs, y, marker="o", markersize=4, label="_score",
                                  **{**style, **(line_kw or {})})
            else:
                line = self._draw_front(ax, key, xs, y, layers, style, line_kw)
            self.lines_[key] = line
            interval = self._draw_interval(ax, xs, low[key], high[key], colours[head],
                                           interval_style, errorbar_kw, fill_between_kw)
            if interval is not None:
                self.intervals_[key] = interval
            if mark_best:
                marker = self._draw_best(ax, key, xs, y, layers, colours[head])
                if marker is not None:
                    self.best_markers_[key] = marker
        self.chance_level_ = self._draw_chance(ax, styles, chance_level_kw)

        if kind == "layer":
            ax.set_xticks(np.arange(len(layers)), layers, rotation=30, ha="right")
            ax.set_xlabel("layer")
        else:
            self._label_layers(ax, layers, np.asarray(self.costs, dtype=float))
            ax.set_xlabel(self.cost_name)
        ax.set_ylabel(self.score_name)
        ax.grid(alpha=0.3)
        self.legend_ = _legend.draw_legend(ax) if legend else None
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    def _draw_front(self, ax, key, costs, y, layers, style, line_kw):
        from . import _legend

        on_front = pareto_front(costs, y)
        front = np.flatnonzero(on_front)
        front = front[np.argsort(costs[front], kind="stable")]
        self.pareto_front_[key] = [layers[i] for i in front]
        (line,) = ax.plot(costs[front], y[front], drawstyle="steps-post", marker="o",
                          markersize=5, label="_pareto_front",
                          **{**style, **(line_kw or {})})
        off = np.flatnonzero(~on_front & np.isfinite(costs) & np.isfinite(y))
        if off.size:
            ax.plot(costs[off], y[off], linestyle="none", marker="o", markersize=5,
                    markerfacecolor="none", color=style["color"], label="_dominated")
            _legend.add_mark(ax, "off the Pareto front", linestyle="none", marker="o",
                             markersize=5, markerfacecolor="none", color=_GREY)
        return line

    @staticmethod
    def _draw_interval(ax, xs, low, high, colour, interval_style, errorbar_kw,
                       fill_between_kw):
        from . import _legend

        drawn = np.isfinite(low) & np.isfinite(high) & (high > low)
        if interval_style is None or not drawn.any():
            return None
        if interval_style == "errorbar":
            # centred on the interval, not the score: a bootstrap interval need
            # not be symmetric around (or even contain) the point estimate
            middle, half = (low + high) / 2, (high - low) / 2
            kw = dict(fmt="none", ecolor=colour, elinewidth=1.2, capsize=3, alpha=0.8,
                      label="_interval")
            kw.update(errorbar_kw or {})
            artist = ax.errorbar(xs[drawn], middle[drawn], yerr=half[drawn], **kw)
            _legend.add_mark(ax, "95% interval", linestyle="none", marker="|",
                             markersize=12, markeredgewidth=1.5, color=_GREY)
        else:
            order = np.argsort(xs, kind="stable")
            kw = dict(color=colour, alpha=0.15, linewidth=0, label="_interval")
            kw.update(fill_between_kw or {})
            artist = ax.fill_between(xs[order], low[order], high[order],
                                     where=drawn[order], **kw)
            _legend.add_mark(ax, "95% interval", color=_GREY, alpha=0.3, linewidth=8,
                             solid_capstyle="butt")
        return artist

    def _draw_best(self, ax, key, xs, y, layers, colour):
        from . import _legend

        chosen = None if self.chosen_layers is None else self.chosen_layers.get(key)
        if chosen is not None:
            if chosen not in layers:
                raise ValueError(
                    f"chosen_layers[{key!r}] = {chosen!r} is not one of the layers "
                    f"{layers}."
                )
            best = layers.index(chosen)
        elif np.isfinite(y).any():
            best = int(np.nanargmax(y))
        else:
            return None
        label = "best layer" if self.chosen_layers is None else "chosen layer"
        (marker,) = ax.plot(xs[best], y[best], linestyle="none", marker="*",
                            markersize=13, markerfacecolor=colour,
                            markeredgecolor="black", markeredgewidth=0.7, zorder=4,
                            label="_best")
        _legend.add_mark(ax, label, linestyle="none", marker="*", markersize=11,
                         markerfacecolor="white", markeredgecolor="black")
        return marker

    def _draw_chance(self, ax, styles, chance_level_kw):
        from . import _legend

        if self.chance_level is None:
            return []
        if isinstance(self.chance_level, dict):
            levels = [(styles.get(split, "-"), level)
                      for split, level in self.chance_level.items()]
        else:
            levels = [("-", self.chance_level)]
        lines = []
        for style, level in levels:
            if not isinstance(level, Real) or not math.isfinite(level):
                raise ValueError(
                    f"chance_level must be a finite number or a dict of split -> "
                    f"number; got {self.chance_level!r}."
                )
            kw = dict(color=_GREY, linewidth=1, linestyle=style, zorder=1.5,
                      label="_chance_level")
            kw.update(chance_level_kw or {})
            lines.append(ax.axhline(float(level), **kw))
        _legend.add_mark(ax, "chance level", color=_GREY, linewidth=1)
        return lines

    @staticmethod
    def _label_layers(ax, layers, costs):
        """Layer names on the top axis, at their costs.

        Layers closer in cost than 2.5% of the axis share one tick (their names
        side by side), so that the labels do not print over each other.
        """
        known = [(float(c), name) for name, c in zip(layers, costs) if np.isfinite(c)]
        known.sort(key=lambda item: item[0])
        span = (known[-1][0] - known[0][0]) if known else 0.0
        groups = []
        for cost, name in known:
            if groups and cost - groups[-1][-1][0] <= 0.025 * span:
                groups[-1].append((cost, name))
            else:
                groups.append([(cost, name)])
        gid = "sklearn_layers.layer_names"
        top = next((child for child in ax.child_axes if child.get_gid() == gid), None)
        if top is None:
            top = ax.secondary_xaxis("top")
            top.set_gid(gid)
        top.set_xticks([float(np.mean([c for c, _ in g])) for g in groups],
                       ["\n".join(name for _, name in g) for g in groups],
                       rotation=90, fontsize="x-small")

    @classmethod
    def from_sweep(
        cls,
        table,
        *,
        cost="forward_share",
        chance_level=None,
        score_name="score",
        ax=None,
        **plot_kw,
    ):
        """Plot a :func:`layer_sweep` table.

        Parameters
        ----------
        table : DataFrame or list of dict
            What :func:`layer_sweep` returned, or any subset of its rows with
            one row per layer x head x split. The intervals come from
            ``score_low`` and ``score_high`` (a bootstrap over the test rows,
            or mean +- 1.96 standard errors over the folds for ``"cv"``).
        cost : {"forward_share", "seconds_per_row"}, default="forward_share"
            The column giving each layer's cost in the ``kind="cost"`` view.
        chance_level : float or dict of str -> float, default=None
            Score of guessing, for every split or per split (see
            :class:`LayerSweepDisplay`). For accuracy, the majority-class rate
            of each split's rows, e.g. ``{"test": np.bincount(y_test).max() /
            len(y_test)}``.
        score_name : str, default="score"
            Label of the score axis (the table does not say which scorer made
            it).
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot` (``kind``, ``interval_style``, ...).

        Returns
        -------
        display : LayerSweepDisplay
        """
        if cost not in _COSTS:
            raise ValueError(f"cost must be one of {_COSTS}; got {cost!r}.")
        records = _records(table)
        if not records:
            raise ValueError("The table is empty: there is nothing to plot.")
        missing = [c for c in _REQUIRED if c not in records[0]]
        if missing:
            raise ValueError(
                f"The table lacks the columns {missing}; pass what layer_sweep "
                "returned."
            )
        order = sorted({(r["layer_index"], r["layer"]) for r in records})
        layers = [name for _, name in order]
        if len(set(layers)) != len(layers):
            raise ValueError(f"A layer name has several layer_index values in {order}.")
        position = {name: i for i, name in enumerate(layers)}
        scores, low, high, seen = {}, {}, {}, set()
        for r in records:
            key, i = (r["head"], r["split"]), position[r["layer"]]
            if (key, i) in seen:
                raise ValueError(
                    f"The table has several rows for layer {r['layer']!r}, head "
                    f"{key[0]!r}, split {key[1]!r}; keep one row per layer x head x "
                    "split."
                )
            seen.add((key, i))
            for store, column in ((scores, "score"), (low, "score_low"),
                                  (high, "score_high")):
                row = store.setdefault(key, np.full(len(layers), np.nan))
                row[i] = r.get(column, np.nan)
        costs, cost_name = None, "cost"
        if cost in records[0]:
            costs = np.full(len(layers), np.nan)
            for r in records:
                costs[position[r["layer"]]] = r[cost]
            cost_name = _cost_name(cost, records[0].get("cost_unit"))
        display = cls(layers=layers, scores=scores, score_low=low, score_high=high,
                      costs=costs, cost_name=cost_name, chance_level=chance_level,
                      score_name=score_name)
        return display.plot(ax=ax, **plot_kw)

    @classmethod
    def from_estimator(cls, estimator, *, chance_level=None, ax=None, **plot_kw):
        """Plot the layer scores a fitted intermediate-layer estimator chose by.

        One line (the estimator's head x ``selection_``), a star on the chosen
        layer ``best_layer_``. With cross-validation the intervals are mean +-
        1.96 standard errors over the folds, as :func:`layer_sweep` reports
        them; a validation set or a layer metric gives single numbers, drawn
        without interval.

        Parameters
        ----------
        estimator : IntermediateLayerClassifier or IntermediateLayerRegressor
            Fitted.
        chance_level : float, "uniform" or None, default=None
            Score of guessing, drawn as a horizontal line. ``"uniform"`` is
            ``1 / n_classes`` (the accuracy of guessing uniformly, and the
            majority-class rate when classes are balanced), for accuracy and
            balanced accuracy only. The classifier keeps no class counts: for
            the majority-class rate of unbalanced classes pass the number.
        ax : matplotlib Axes, default=None
            Axes to draw on.
        **plot_kw
            Passed to :meth:`plot` (``kind``, ``interval_style``, ...).

        Returns
        -------
        display : LayerSweepDisplay
        """
        from sklearn.base import is_regressor
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(estimator, "layer_scores_")
        layers = list(estimator.layer_scores_)
        key = (_head_name(estimator), estimator.selection_)
        mean = np.array([estimator.layer_scores_[n] for n in layers], dtype=float)
        half = np.full(len(layers), np.nan)
        if estimator.selection_ == "cv":
            half = _fold_half_width(estimator, layers)
        scoring = estimator.scoring
        default_score = "r2" if is_regressor(estimator) else "accuracy"
        score_name = scoring if isinstance(scoring, str) else (
            default_score if scoring is None else "score")
        costs = np.array([estimator.layer_costs_.get(n, np.nan) for n in layers],
                         dtype=float)
        display = cls(
            layers=layers, scores={key: mean}, score_low={key: mean - half},
            score_high={key: mean + half}, costs=costs,
            cost_name=_cost_name("forward_share", estimator.cost_unit_),
            chance_level=_estimator_chance(estimator, chance_level),
            chosen_layers={key: estimator.best_layer_}, score_name=score_name,
        )
        return display.plot(ax=ax, **plot_kw)


def _fold_half_width(estimator, layers):
    """1.96 standard errors of the fold mean, from the folds' (population) std."""
    from sklearn.model_selection import check_cv

    from .._selection._intervals import _Z95

    try:
        n_folds = check_cv(estimator.cv, classifier=True).get_n_splits()
    except (TypeError, ValueError):  # a splitter that needs the data to count
        return np.full(len(layers), np.nan)
    std = np.array([estimator.layer_score_std_[n] for n in layers], dtype=float)
    if n_folds < 2:
        return np.full(len(layers), np.nan)
    # the std over folds has ddof=0; the standard error uses ddof=1:
    # s1 / sqrt(k) = s0 / sqrt(k - 1)
    return _Z95 * std / np.sqrt(n_folds - 1)


def _estimator_chance(estimator, chance_level):
    if not (isinstance(chance_level, str) and chance_level == "uniform"):
        return chance_level
    accuracy_like = (None, "accuracy", "balanced_accuracy")
    if not hasattr(estimator, "classes_"):
        raise ValueError(
            "chance_level='uniform' is 1 / n_classes; a regressor has no classes. Pass "
            "the chance level of its score as a number (0 for r2: predicting the mean)."
        )
    if estimator.selection_ == "metric" or not (
        estimator.scoring is None or estimator.scoring in accuracy_like
    ):
        raise ValueError(
            "chance_level='uniform' is 1 / n_classes, the chance level of accuracy; "
            f"the layers were scored with scoring={estimator.scoring!r}. Pass the "
            "chance level of that score as a number, or chance_level=None."
        )
    return 1.0 / len(estimator.classes_)
