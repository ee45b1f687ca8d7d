"""Transform and predict over Dask arrays, block by block.

Each block of rows goes through the fitted estimator in its own task with one
torch thread (Dask already runs one task per core; torch's own thread pool on
top oversubscribes them). The output's chunks are given explicitly, so they are
right even when the estimator changes the number of columns -- unlike a
``map_blocks`` call that guesses them from a zero-row sample.

The estimator enters the task graph once, as a single key, however many blocks
there are; with a :class:`~sklearn_layers.FrozenModel` inside, what travels to
the workers is a few hundred bytes.

Needs ``dask`` (``pip install sklearn-layers[dask]``).
"""

import numpy as np

from .utils._optional import import_optional
from .utils._threads import torch_threads

__all__ = ["predict", "predict_proba", "transform"]


def _apply_block(block, estimator, method, trailing, dtype):
    if block.shape[0] == 0:
        return np.empty((0, *trailing), dtype=dtype)
    with torch_threads(1):
        result = np.asarray(getattr(estimator, method)(block))
    if result.shape[1:] != trailing or result.shape[0] != block.shape[0]:
        raise ValueError(
            f"{type(estimator).__name__}.{method} returned shape {result.shape} for a "
            f"block of {block.shape[0]} rows; expected {(block.shape[0], *trailing)}. "
            "The output width must not depend on the rows."
        )
    return result


def _output_spec(estimator, method, X):
    """Trailing output shape and dtype, without computing any block of ``X``."""
    if method == "transform" and isinstance(
        getattr(estimator, "n_features_out_", None), int
    ):
        return (estimator.n_features_out_,), np.dtype(np.float32)
    # one row of zeros, shaped like X's rows, through the fitted estimator
    probe = np.zeros((1, *X.shape[1:]), dtype=X.dtype)
    with torch_threads(1):
        result = getattr(estimator, method)(probe)
    if isinstance(result, list):
        raise TypeError(
            f"{type(estimator).__name__}.{method} returns a list (multi-output); "
            "only array outputs are supported."
        )
    result = np.asarray(result)
    return result.shape[1:], result.dtype


def _map_rows(estimator, X, method):
    da = import_optional("dask.array", purpose="sklearn_layers.dask")
    dask = import_optional("dask", purpose="sklearn_layers.dask")
    if not isinstance(X, da.Array):
        raise TypeError(
            f"X must be a dask array, got {type(X).__name__}; call "
            f"estimator.{method}(X) directly for in-memory data."
        )
    if X.ndim < 2:
        raise ValueError(
            f"X must have a sample axis and a feature axis; got shape {X.shape}."
        )
    if any(len(c) != 1 for c in X.chunks[1:]):
        whole_rows = ", ".join(f"{axis}: -1" for axis in range(1, X.ndim))
        raise ValueError(
            f"X must be chunked along axis 0 only (whole rows per block); got "
            f"chunks {X.chunks}. Rechunk it with X.rechunk({{{whole_rows}}})."
        )
    if not hasattr(estimator, method):
        raise AttributeError(f"{type(estimator).__name__} has no method {method!r}.")
    trailing, dtype = _output_spec(estimator, method, X)
    out_ndim = 1 + len(trailing)
    # one graph key for the estimator, shared by every block's task
    shared = dask.delayed(estimator, pure=False, traverse=False)
    kwargs = {}
    if out_ndim < X.ndim:
        kwargs["drop_axis"] = list(range(out_ndim, X.ndim))
    elif out_ndim > X.ndim:
        kwargs["new_axis"] = list(range(X.ndim, out_ndim))
    return X.map_blocks(
        _apply_block,
        shared,
        method,
        tuple(trailing),
        dtype,
        dtype=dtype,
        chunks=(X.chunks[0], *((n,) for n in trailing)),
        meta=np.empty((0,) * out_ndim, dtype=dtype),
        name=f"sklearn-layers-{method}-{dask.base.tokenize(X, shared, method)}",
        **kwargs,
    )


def transform(estimator, X):
    """Transform a Dask array block by block with a fitted estimator.

    Parameters
    ----------
    estimator : fitted transformer
        E.g. a fitted :class:`~sklearn_layers.LayerFeatureTransformer` or a
        pipeline ending in a transformer.
    X : dask.array.Array of shape (n_samples, ...)
        Chunked along axis 0 only.

    Returns
    -------
    X_new : dask.array.Array of shape (n_samples, n_features_out)
        Lazy; its row chunks are ``X``'s and its one column chunk is the
        transformer's output width.

    Examples
    --------
    >>> import dask
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn_layers import LayerFeatureTransformer
    >>> from sklearn_layers import dask as sld
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X = np.random.default_rng(0).normal(size=(100, 4)).astype("float32")
    >>> lft = LayerFeatureTransformer(make_mlp(4, hidden=(16, 8)), layers="all").fit(X)
    >>> features = sld.transform(lft, da.from_array(X, chunks=30))
    >>> features.chunks
    ((30, 30, 30, 10), (27,))
    >>> with dask.config.set(scheduler="synchronous"):
    ...     np.allclose(features.compute(), lft.transform(X))
    True
    """
    return _map_rows(estimator, X, "transform")


def predict(estimator, X):
    """Predict on a Dask array block by block with a fitted estimator.

    Parameters
    ----------
    estimator : fitted estimator with ``predict``
        E.g. a fitted :class:`~sklearn_layers.IntermediateLayerClassifier` or a
        pipeline ending in a classifier or regressor.
    X : dask.array.Array of shape (n_samples, ...)
        Chunked along axis 0 only.

    Returns
    -------
    y_pred : dask.array.Array of shape (n_samples,) or (n_samples, n_outputs)
        Lazy, with ``X``'s row chunks.

    Examples
    --------
    >>> import dask
    >>> import dask.array as da
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import IntermediateLayerClassifier
    >>> from sklearn_layers import dask as sld
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> ilc = IntermediateLayerClassifier(make_mlp(4), cv=3).fit(X, y)
    >>> y_pred = sld.predict(ilc, da.from_array(X, chunks=50))
    >>> y_pred.chunks
    ((50, 50, 50),)
    >>> with dask.config.set(scheduler="synchronous"):
    ...     bool((y_pred.compute() == ilc.predict(X)).all())
    True
    """
    return _map_rows(estimator, X, "predict")


def predict_proba(estimator, X):
    """Class probabilities for a Dask array, block by block.

    Parameters
    ----------
    estimator : fitted classifier with ``predict_proba``
        E.g. a fitted :class:`~sklearn_layers.IntermediateLayerClassifier`.
    X : dask.array.Array of shape (n_samples, ...)
        Chunked along axis 0 only.

    Returns
    -------
    proba : dask.array.Array of shape (n_samples, n_classes)
        Lazy, with ``X``'s row chunks and one column chunk.

    Examples
    --------
    >>> import dask
    >>> import dask.array as da
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers import IntermediateLayerClassifier
    >>> from sklearn_layers import dask as sld
    >>> from sklearn_layers.utils.toy import make_mlp
    >>> X, y = load_iris(return_X_y=True)
    >>> ilc = IntermediateLayerClassifier(make_mlp(4), cv=3).fit(X, y)
    >>> proba = sld.predict_proba(ilc, da.from_array(X, chunks=50))
    >>> proba.shape, proba.chunks
    ((150, 3), ((50, 50, 50), (3,)))
    >>> with dask.config.set(scheduler="synchronous"):
    ...     np.allclose(proba.compute(), ilc.predict_proba(X))
    True
    """
    return _map_rows(estimator, X, "predict_proba")
