"""One colour per head, one line style per split, one legend: kept on the axes.

A display drawn on axes that already hold one (two fitted classifiers on one
plot, say) must give a head the colour it already has there, a new head the
next free colour, and must not repeat a legend entry. The axes themselves
remember what is taken: every legend entry is an empty proxy line added to
them, tagged with a ``gid`` that says which kind of entry it is. Nothing is
stored anywhere else, so two figures drawn in two threads never share state.
"""

import warnings

_KINDS = ("head", "split", "mark")  # the legend's order
_PREFIX = "sklearn_layers.legend."

# in-distribution splits come first, so they get the solid line
IN_DISTRIBUTION = ("cv", "validation", "id", "in-distribution", "in distribution")
LINE_STYLES = ("-", "--", ":", "-.", (0, (3, 1, 1, 1, 1, 1)), (0, (8, 2)))


def _entries(ax, kind):
    """Label -> (proxy, palette index) of the entries of one kind on ``ax``."""
    found = {}
    for line in ax.lines:
        gid = line.get_gid() or ""
        if gid.startswith(f"{_PREFIX}{kind}"):
            index = gid.rpartition(":")[2]
            found[line.get_label()] = (line, int(index) if index.isdigit() else None)
    return found


def _add(ax, kind, label, index=None, **style):
    from matplotlib.lines import Line2D

    gid = f"{_PREFIX}{kind}" + ("" if index is None else f":{index}")
    ax.add_line(Line2D([], [], label=label, gid=gid, **style))


def _assign(ax, kind, names, size, what):
    """Palette index of each name: the one it has on ``ax``, else the next free one.

    The index lives in the proxy's ``gid`` (a line reports every dash tuple as
    ``"--"``, so styles cannot be told apart by asking the line).
    """
    taken = {label: index for label, (_, index) in _entries(ax, kind).items()}
    free = [i for i in range(size) if i not in taken.values()]
    assigned = {}
    for name in names:
        if name in taken:
            assigned[name] = taken[name]
            continue
        if not free:
            warnings.warn(
                f"More than {size} {what}s on one axes: some {what}s share a "
                f"{'colour' if kind == 'head' else 'line style'}.",
                UserWarning,
                stacklevel=4,
            )
            free = list(range(size))
        assigned[name] = taken[name] = free.pop(0)
    return assigned


def head_colours(ax, heads):
    """Colour of each head: the one it has on ``ax``, else the next unused one."""
    import matplotlib as mpl

    palette = mpl.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    existing = _entries(ax, "head")
    indices = _assign(ax, "head", heads, len(palette), "head")
    for head, index in indices.items():
        if head not in existing:
            _add(ax, "head", head, index, color=palette[index], linewidth=2)
    return {head: palette[index] for head, index in indices.items()}


def split_styles(ax, splits):
    """Line style of each split; in-distribution splits first, so they are solid."""
    ordered = sorted(splits, key=lambda s: str(s).lower() not in IN_DISTRIBUTION)
    existing = _entries(ax, "split")
    indices = _assign(ax, "split", ordered, len(LINE_STYLES), "split")
    for split in ordered:
        if split not in existing:
            _add(ax, "split", split, indices[split], color="black", linewidth=1.5,
                 linestyle=LINE_STYLES[indices[split]])
    return {split: LINE_STYLES[index] for split, index in indices.items()}


def add_mark(ax, label, **style):
    """A legend entry that explains a marker, band or line (added once per label)."""
    if label not in _entries(ax, "mark"):
        _add(ax, "mark", label, **style)


def draw_legend(ax, **legend_kw):
    """One legend right of the data area: heads, then splits, then the marks.

    Returns
    -------
    legend : matplotlib Legend
    """
    handles = [line for kind in _KINDS for line, _ in _entries(ax, kind).values()]
    kw = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              fontsize="small", frameon=False)
    kw.update(legend_kw)
    return ax.legend(handles=handles, labels=[h.get_label() for h in handles], **kw)
