"""Reprs of the package's estimators: a link to their API page, and short networks.

scikit-learn prints every parameter with ``repr``. For a torch network that
is the whole module tree, which scikit-learn then cuts to 700 characters in
the middle of the structure; a Hugging Face tokenizer prints its whole
special-token table. :class:`ReprMixin` prints such a parameter as its class
name and size (``BertModel(22.7M parameters)``) in the text repr and in the
HTML diagram (parameters and fitted attributes), and makes the diagram link
to the estimator's page of this package's API reference.

Nothing is patched and nothing is changed: the repr is made from a shallow
stand-in of the estimator whose big parameters are replaced by summaries, so
``get_params`` (hence ``clone``, grid searches, pickling) keeps returning the
real objects, and two threads printing one estimator never see each other's
state.

Inside a scikit-learn container (a ``Pipeline`` printed as text) the
container's printer asks each step for ``get_params`` directly, not for its
repr: there the network is printed by scikit-learn as before. The container's
HTML diagram does use each step's repr and parameter table, so it is short.
"""

import torch

from .._version import __version__

# The published documentation; its API pages are
# docs/generated/sklearn_layers.<Name>.html
# (docs/api.rst lists every estimator under ``sklearn_layers``).
DOCS_URL = "https://sklearn-layers.readthedocs.io/en/{version}/"
_API_PAGE = "generated/sklearn_layers.{estimator_name}.html"


def _docs_version():
    """``"latest"`` for development versions, ``"stable"`` for releases."""
    return "latest" if "dev" in __version__ else "stable"


def _count(n):
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)


class _Summary:
    """Prints as a short text in place of a big object (never compared or copied)."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


def summarize(value):
    """A short stand-in for a torch module or a tokenizer, else ``value`` itself.

    Parameters
    ----------
    value : object
        A parameter (or fitted attribute) value.

    Returns
    -------
    short : object
        ``value``, or an object whose repr is ``ClassName(N parameters)`` for a
        :class:`torch.nn.Module` and ``ClassName(vocab_size=N)`` for a
        tokenizer.
    """
    name = type(value).__name__
    if isinstance(value, torch.nn.Module):
        try:
            n = sum(p.numel() for p in value.parameters())
        except ValueError:  # uninitialised lazy parameters have no size yet
            return _Summary(f"{name}(uninitialized parameters)")
        return _Summary(f"{name}({_count(n)} parameters)")
    if callable(getattr(value, "convert_tokens_to_ids", None)) and isinstance(
        getattr(value, "vocab_size", None), int
    ):
        return _Summary(f"{name}(vocab_size={value.vocab_size})")
    return value


def _short_stand_in(estimator):
    """A shallow copy of ``estimator`` with summaries for big parameters, or None."""
    params = estimator.get_params(deep=False)
    short = {key: summarize(value) for key, value in params.items()}
    changed = {key: value for key, value in short.items() if value is not params[key]}
    if not changed:
        return None
    # a new instance sharing the estimator's attributes (no pickling protocol,
    # no __init__); only the stand-in's own __dict__ is written
    stand_in = object.__new__(type(estimator))
    vars(stand_in).update(vars(estimator))
    vars(stand_in).update(changed)
    return stand_in


class ReprMixin:
    """Short reprs for big parameters, and the diagram's link to the API page.

    Put it first among an estimator's bases (``class X(ReprMixin,
    ClassifierMixin, BaseEstimator)``). See the module docstring.
    """

    _doc_link_module = "sklearn_layers"
    _doc_link_template = DOCS_URL + _API_PAGE

    def _doc_link_url_param_generator(self):
        # every public estimator is documented under the top-level package,
        # whichever sub-package defines it
        return {"version": _docs_version(), "estimator_name": type(self).__name__}

    def __repr__(self, N_CHAR_MAX=700):
        stand_in = _short_stand_in(self)
        target = self if stand_in is None else stand_in
        return super(ReprMixin, target).__repr__(N_CHAR_MAX=N_CHAR_MAX)

    def _get_params_html(self, deep=True, doc_link=""):
        stand_in = _short_stand_in(self)
        target = self if stand_in is None else stand_in
        return super(ReprMixin, target)._get_params_html(deep=deep, doc_link=doc_link)

    def _get_fitted_attr_html(self, doc_link=""):
        attributes = super()._get_fitted_attr_html(doc_link=doc_link)
        for name, entry in list(attributes.items()):
            if isinstance(entry, dict) and "value" in entry:
                short = summarize(entry["value"])
                if short is not entry["value"]:
                    attributes[name] = {**entry, "value": short}
        return attributes
