"""Turn layer specifications into concrete module names.

A layer is named by its module path in ``model.named_modules()`` (``"layer3.1"``),
optionally with the suffix ``":input"`` to capture what a module receives rather
than what it returns. Two further names are special: ``"output"`` (the model's own
output) and the spec ``"penultimate"`` (the input of the model's last
``nn.Linear``, or the last hidden state of a model whose last module reduces a
token sequence: see :func:`penultimate_of`).

The *block list* is the network read as a sequence of stages: containers
(``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) and single-child wrappers
are opened, and a leaf layer with parameters (a convolution, a linear layer)
absorbs the parameter-free or normalising modules that follow it (activation,
batch norm, pooling, dropout), so that each block is captured *after* its
non-linearity. A composite module (a ResNet ``BasicBlock``, a BERT layer) is a
block of its own.
"""

import fnmatch
import numbers

from torch import nn

INPUT_SUFFIX = ":input"
OUTPUT = "output"

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)
_MIN_BLOCKS = 3  # fewer blocks than this: the largest one is opened


def _has_parameters_recursive(module):
    return any(True for _ in module.parameters(recurse=True))


def _has_direct_tensors(module):
    return any(True for _ in module.parameters(recurse=False)) or any(
        True for _ in module.buffers(recurse=False)
    )


def _is_auxiliary(module):
    """A module that transforms a stage's output without being a stage itself."""
    if isinstance(module, _NORMS):
        return True
    return not _has_parameters_recursive(module)


def _open(module, prefix, forced):
    """Yield ``(name, module, parent)`` with containers and wrappers opened.

    Containers, single-child wrappers and the paths in ``forced`` are opened;
    ``parent`` is the path of the container a module was found in.
    """
    for name, child in module.named_children():
        path = f"{prefix}.{name}" if prefix else name
        children = list(child.named_children())
        if (
            isinstance(child, _CONTAINERS)
            or (len(children) == 1 and not _has_direct_tensors(child))
            or (path in forced and children)
        ):
            yield from _open(child, path, forced)
        else:
            yield path, child, prefix


def _blocks(model, forced):
    blocks = []
    run_parent = None  # container of a leaf layer's run that may absorb auxiliaries
    for name, module, parent in _open(model, "", forced):
        if _is_auxiliary(module):
            # an auxiliary ends its own container's run, never a neighbour's
            if run_parent is not None and parent == run_parent:
                blocks[-1] = name
            continue
        blocks.append(name)
        run_parent = None if any(True for _ in module.children()) else parent
    return blocks


def _n_parameters(module):
    return sum(p.numel() for p in module.parameters())


def block_names(model):
    """The model's block list: one module name per stage, in registration order.

    A model read this way with fewer than three blocks is a wrapper (a task
    head around a backbone, ``nn.Sequential(preprocessing, backbone)``): its
    largest composite block is opened, repeatedly, so the list shows the
    backbone's stages.

    Parameters
    ----------
    model : torch.nn.Module
        The network.

    Returns
    -------
    names : list of str
        Module paths as in ``model.named_modules()``.
    """
    forced = set()
    blocks = _blocks(model, forced)
    while len(blocks) < _MIN_BLOCKS:
        composite = [
            name for name in blocks
            if name not in forced and any(True for _ in model.get_submodule(name).children())
        ]
        if not composite:
            break
        forced.add(max(composite, key=lambda n: _n_parameters(model.get_submodule(n))))
        blocks = _blocks(model, forced)
    return blocks or [OUTPUT]


def _last_linear(model):
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


def penultimate_of(model, shapes, last=None):
    """What ``"penultimate"`` resolves to, knowing one row's shapes if given.

    The input of the last ``nn.Linear`` -- unless the module before it reduces
    a token sequence to one vector (a BERT pooler on the first token, a
    classification head on one token): then the last hidden state, the
    reducer's input, which the chosen pooling reduces (a mean over the real
    tokens by default) instead of the model's own choice of one token.
    """
    from ._shapes import sequence_reducer

    last = last if last is not None else _last_linear(model)
    reducer = None if shapes is None else sequence_reducer(shapes, last)
    return (reducer if reducer is not None else last) + INPUT_SUFFIX


def penultimate_layer(model):
    """The name ``"penultimate"`` resolves to (the last ``nn.Linear``'s input), or None."""
    last = _last_linear(model)
    return None if last is None else last + INPUT_SUFFIX


def available_layers(model):
    """Every name a layer spec may resolve to, for error messages."""
    return [name for name, _ in model.named_modules() if name] + [OUTPUT]


def _describe(model, limit=40):
    blocks = block_names(model)
    names = available_layers(model)
    shown = ", ".join(repr(n) for n in names[:limit])
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return f"Blocks (int index and 'all'): {blocks}. Modules: {shown}{more}."


def resolve_layers(model, spec, shapes=None):
    """Resolve a layer specification to a list of unique layer names.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    spec : str, int or list/tuple of str and int
        See :class:`~sklearn_layers.LayerFeatureTransformer` ``layers``.
    shapes : ModuleShapes, default=None
        One row's module shapes (:class:`~._shapes.ModuleShapes`), read only
        to resolve ``"penultimate"`` on a model whose last module reduces a
        token sequence; without them, ``"penultimate"`` is the last
        ``nn.Linear``'s input.

    Returns
    -------
    names : list of str
        Module paths (optionally ending in ``":input"``) or ``"output"``, in the
        order requested.

    Raises
    ------
    ValueError
        If a name matches nothing (the message lists what exists), an index is
        out of range, or a layer is requested twice.
    TypeError
        If an element of the spec is neither a string nor an integer.
    """
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    if not items:
        raise ValueError("layers must name at least one layer; got an empty list.")
    if is_traced(model):
        inner = [item for item in items if item != OUTPUT]
        if inner:
            raise TypeError(
                f"The model is a torch.jit.trace-d module ({type(model).__name__}): its "
                "submodules run traced code that forward hooks cannot observe, so only "
                f"layers='output' can be served; got {inner}. Pass the eager nn.Module it "
                "was traced from to extract inner layers."
            )
    modules = dict(model.named_modules())
    blocks = None
    names = []
    for item in items:
        if isinstance(item, numbers.Integral) and not isinstance(item, bool):
            blocks = blocks if blocks is not None else block_names(model)
            if not -len(blocks) <= item < len(blocks):
                raise ValueError(
                    f"Layer index {item} is out of range for a model with "
                    f"{len(blocks)} blocks: {blocks}."
                )
            names.append(blocks[item])
        elif isinstance(item, str):
            names.extend(_resolve_name(model, modules, item, shapes))
        else:
            raise TypeError(
                f"A layer is given by a str or an int, got {type(item).__name__}: "
                f"{item!r}."
            )
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(
                f"Layer {name!r} is requested more than once in layers={spec!r}."
            )
        seen.add(name)
    return names


def stage_names(model):
    """The stages a timm-style model declares in ``feature_info``.

    timm models carry ``feature_info``: one dict per stage with the stage's
    module path under ``"module"`` (a list, or an object whose ``get_dicts()``
    returns that list). Those are the stages timm's ``out_indices`` count;
    ``layers=1`` counts this package's block list instead.
    """
    info = getattr(model, "feature_info", None)
    if info is None:
        raise ValueError(
            "layers='stages' takes the stages a model declares in feature_info (as "
            f"timm models do); {type(model).__name__} has no feature_info. "
            + _describe(model)
        )
    dicts = info.get_dicts() if hasattr(info, "get_dicts") else info
    try:
        stages = [d["module"] for d in dicts]
    except (TypeError, KeyError) as exc:
        raise ValueError(
            "feature_info must be a list of dicts with a 'module' key (timm's "
            f"layout); got {info!r}."
        ) from exc
    modules = dict(model.named_modules())
    unknown = [s for s in stages if s not in modules]
    if unknown:
        raise ValueError(f"feature_info names modules the model does not have: {unknown}.")
    return stages


def is_traced(model):
    """Whether ``model`` is a ``torch.jit.trace``-d module (hooks see only its output)."""
    import torch

    return isinstance(model, torch.jit.ScriptModule)


_COMPILED_PREFIX = "_orig_mod"  # what torch.compile's wrapper calls the eager model


def _eager_spelling(modules, item):
    """``item`` without the ``torch.compile`` wrapper's prefix, when it names nothing.

    ``torch.compile(net).named_modules()`` lists ``"_orig_mod.4"`` where the
    eager ``net`` (whose layers are extracted) lists ``"4"``: both name the
    same module, and resolve to the eager name, so they share cache entries.
    """
    path = item[: -len(INPUT_SUFFIX)] if item.endswith(INPUT_SUFFIX) else item
    while path.split(".")[0] == _COMPILED_PREFIX and path not in modules:
        if path == _COMPILED_PREFIX:
            return OUTPUT if item == path else item
        path = path[len(_COMPILED_PREFIX) + 1 :]
        item = path + (INPUT_SUFFIX if item.endswith(INPUT_SUFFIX) else "")
    return item


def _resolve_name(model, modules, item, shapes=None):
    item = _eager_spelling(modules, item)
    if item == "all":
        return block_names(model)
    if item == "stages":
        return stage_names(model)
    if item == OUTPUT:
        return [OUTPUT]
    if item == "penultimate":
        last = _last_linear(model)
        if last is None:
            raise ValueError(
                "layers='penultimate' means the input of the model's last nn.Linear, "
                "but the model has no nn.Linear. " + _describe(model)
            )
        return [penultimate_of(model, shapes, last)]
    path = item[: -len(INPUT_SUFFIX)] if item.endswith(INPUT_SUFFIX) else item
    if any(ch in path for ch in "*?["):
        matches = [n for n in modules if n and _glob_match(n, path)]
        if not matches:
            raise ValueError(
                f"Layer pattern {item!r} matches no module. " + _describe(model)
            )
        suffix = item[len(path) :]
        return [m + suffix for m in matches]
    if path not in modules or path == "":
        raise ValueError(f"Unknown layer {item!r}. " + _describe(model))
    return [item]


def _glob_match(name, pattern):
    """Match a dotted path component by component: ``*`` never crosses a dot."""
    parts, wanted = name.split("."), pattern.split(".")
    return len(parts) == len(wanted) and all(
        fnmatch.fnmatchcase(p, w) for p, w in zip(parts, wanted)
    )


def module_of(model, name):
    """The module whose output (or input) a resolved layer name captures."""
    if name == OUTPUT:
        return model
    path = name[: -len(INPUT_SUFFIX)] if name.endswith(INPUT_SUFFIX) else name
    return model.get_submodule(path)


def captures_input(name):
    """Whether a resolved layer name captures the module's input."""
    return name.endswith(INPUT_SUFFIX)
