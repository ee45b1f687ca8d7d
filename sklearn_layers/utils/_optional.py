"""Import optional dependencies with an error that names the extra to install."""

import importlib

_EXTRA_OF = {
    "pandas": "pandas",
    "tqdm": "progress",
    "matplotlib": "plot",
    "transformers": "text",
    "dask": "dask",
    "distributed": "dask",
}


def import_optional(module_name, *, purpose=None):
    """Import ``module_name`` or raise an ImportError naming the extra.

    Parameters
    ----------
    module_name : str
        Dotted module name, e.g. ``"matplotlib.pyplot"``.
    purpose : str, default=None
        What the module is needed for, added to the error message.

    Returns
    -------
    module : module
        The imported module.
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        top = module_name.split(".")[0]
        extra = _EXTRA_OF.get(top, top)
        why = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"{top!r} is required{why} but is not installed. Install it with "
            f"`pip install sklearn-layers[{extra}]` (or `pip install {top}`)."
        ) from exc
