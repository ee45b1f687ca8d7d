"""prepare_for_deployment: a fitted estimator that runs only what it predicts with.

Why a call and not something ``fit`` does by itself: during a grid search
every candidate is fitted and scored exactly as a deployed estimator later
predicts, and what makes the search run each row once -- every block of each
row computed once and kept in the process-wide cache for the other candidates
and folds -- is what a deployed estimator must not do (it would compute every
block of each new row and fill a cache nobody reads). Nothing tells a refit of
the winner from a candidate's fit, so the switch is one explicit call on the
fitted estimator, made once the search is over.
"""

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ._transformer import LayerFeatureTransformer


def prepare_for_deployment(estimator):
    """Make a fitted estimator run the network only up to the layers it uses.

    Every fitted :class:`LayerFeatureTransformer` inside ``estimator`` (a
    pipeline's steps, a search's ``best_estimator_``, a selector's
    ``extractor_``, at any depth) stops prefetching (``prefetch=False``), so
    the forward pass exits right after the deepest layer it extracts, and
    stops using the process-wide default cache (``cache="memory"`` becomes
    ``None``), so predicting new rows stores nothing. A cache passed
    explicitly (a :class:`MemoryCache`, a :class:`DiskCache` or a directory)
    is kept: it is the user's, and it then stores only the layers used.
    Nothing is refitted and predictions are unchanged; unfitted transformers
    (a selector's ``extractor`` parameter) are left alone.

    Parameters
    ----------
    estimator : estimator
        A fitted estimator, pipeline or search.

    Returns
    -------
    estimator : estimator
        The same object, changed in place (pickle it afterwards).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn_layers import LayerFeatureTransformer, prepare_for_deployment
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X = np.random.default_rng(0).normal(size=(30, 4))
    >>> y = np.arange(30) % 2
    >>> pipe = make_pipeline(LayerFeatureTransformer(make_mlp(), layers=1),
    ...                      LogisticRegression()).fit(X, y)
    >>> features = prepare_for_deployment(pipe)[0]
    >>> features.cache, features.prefetch
    (None, False)
    """
    for transformer in _fitted_transformers(estimator):
        if isinstance(transformer.cache, str) and transformer.cache == "memory":
            transformer.cache = None
        transformer.prefetch = False
    return estimator


def _fitted_transformers(root):
    seen, stack = set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (torch.nn.Module, np.ndarray, torch.Tensor)):
            continue
        seen.add(id(obj))
        if isinstance(obj, LayerFeatureTransformer) and hasattr(obj, "layer_names_"):
            yield obj
        if isinstance(obj, BaseEstimator):
            stack.extend(vars(obj).values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
