"""Sphinx configuration of the sklearn-layers documentation.

Build with ``make docs`` (``sphinx-build -W --keep-going -b html docs
docs/_build/html``): every warning is an error.
"""

import os
from pathlib import Path

import sklearn_layers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# -- Project -----------------------------------------------------------------

project = "sklearn-layers"
author = "sklearn-layers developers"
copyright = "sklearn-layers developers, BSD-3-Clause"
release = sklearn_layers.__version__
version = ".".join(release.split(".")[:2])

# -- General -----------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "_templates", "examples/GALLERY_HEADER.rst"]
default_role = "literal"  # `x` in a docstring renders as code, as in scikit-learn
# Not nitpicky: references to objects of projects whose inventories are not
# loaded (see intersphinx below) render as plain code instead of failing.
nitpicky = False

# -- autodoc / autosummary / numpydoc ----------------------------------------

autosummary_generate = True  # one page per public name, under docs/generated/
autodoc_default_options = {}  # members: see the class template; sklearn-provided ones
# are skipped by _skip_sklearn_members below
autodoc_typehints = "none"  # the numpydoc docstrings carry the types
numpydoc_show_class_members = False  # the class template lists members itself
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- intersphinx -------------------------------------------------------------
# Links to scikit-learn, PyTorch and NumPy. Sphinx downloads their inventories
# (objects.inv) at the start of every build; without network access that fails
# with a warning, and -W turns it into an error. So inventories are used only
# when they can be had:
#
# * a local copy ``docs/_intersphinx/<name>.inv`` is used when present (none is
#   shipped: fetch them once with ``curl -o docs/_intersphinx/sklearn.inv
#   https://scikit-learn.org/stable/objects.inv`` and so on);
# * with ``SKLEARN_LAYERS_DOCS_INTERSPHINX=1`` in the environment the online
#   inventories are fetched (a failed download is then an error, as it should
#   be for a build that asked for links);
# * otherwise the mapping is empty: the build is offline, and references such as
#   :class:`~sklearn.pipeline.Pipeline` render as code without a link. That is
#   why ``nitpicky`` stays off, and why terms of scikit-learn's glossary that
#   docstrings use (:term:`fit`) have local entries in glossary.rst.
_INVENTORIES = {
    "sklearn": "https://scikit-learn.org/stable/",
    "torch": "https://docs.pytorch.org/docs/stable/",
    "numpy": "https://numpy.org/doc/stable/",
}
_ONLINE = os.environ.get("SKLEARN_LAYERS_DOCS_INTERSPHINX", "") not in ("", "0")
intersphinx_mapping = {}
for _name, _url in _INVENTORIES.items():
    _local = HERE / "_intersphinx" / f"{_name}.inv"
    if _local.is_file():
        intersphinx_mapping[_name] = (_url, str(_local))
    elif _ONLINE:
        intersphinx_mapping[_name] = (_url, None)
intersphinx_timeout = 10

# -- sphinx-gallery ----------------------------------------------------------

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("sklearn_layers",),
    "backreferences_dir": "generated/backreferences",
    "within_subsection_order": "FileNameSortKey",
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 1,
    # no generated sg_execution_times.rst pages next to the sources
    "write_computation_times": False,
    # an example that raises fails the build
    "only_warn_on_example_error": False,
    "abort_on_example_error": True,
}

# -- HTML --------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"sklearn-layers {release}"
html_static_path = ["_static"]
html_theme_options = {
    "navbar_end": ["navbar-icon-links"],
    "show_prev_next": False,
    "navigation_with_keys": False,
}
html_context = {"default_mode": "light"}
html_show_sourcelink = False

# -- benchmarks/README.md ----------------------------------------------------
# The benchmark tables live in benchmarks/README.md (Markdown, rewritten by the
# benchmark scripts' authors). No Markdown parser is a docs dependency, so the
# page benchmarks.rst summarises the benchmarks and, when the file exists,
# shows it verbatim as a literal block appended at read time. A missing file
# (e.g. on a checkout without benchmarks) leaves the summary alone instead of
# failing the build.
_BENCH_README = ROOT / "benchmarks" / "README.md"


def _append_bench_readme(app, docname, source):
    if docname != "benchmarks" or not _BENCH_README.is_file():
        return
    source[0] += (
        "\n\nThe current ``benchmarks/README.md``\n"
        "------------------------------------\n\n"
        ".. literalinclude:: ../benchmarks/README.md\n"
        "   :language: markdown\n"
    )


def _skip_sklearn_members(app, what, name, obj, skip, options):
    """Leave out the methods scikit-learn provides (get_params, score, set_output,
    set_*_request, ...): they behave as in scikit-learn, and their docstrings
    point into scikit-learn's own documentation (labels that do not exist
    here). Members defined by this package, on a class or on a private base
    class such as the GrowNet estimators' ``fit``, are kept.
    """
    module = getattr(obj, "__module__", None) or ""
    if what == "class" and (module == "sklearn" or module.startswith("sklearn.")):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_members)
    app.connect("source-read", _append_bench_readme)
    # the file is an input of benchmarks.rst: rebuild the page when it changes
    app.connect(
        "env-get-outdated",
        lambda app, env, added, changed, removed: (
            ["benchmarks"] if _BENCH_README.is_file() else []
        ),
    )

