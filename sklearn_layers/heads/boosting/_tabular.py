"""Tabular input for the GrowNet estimators: categorical columns, missing values, scaling.

:func:`categorical_mask` reads ``categorical_features`` as
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` does;
:func:`split_columns` validates ``X`` into a numeric block (NaN allowed) and a
categorical block; :class:`TabularEncoder`, fitted on the training rows only,
turns both into one float32 matrix for the networks.
"""

import warnings

import numpy as np
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils import _safe_indexing, check_array


def _is_categorical_dtype(dtype):
    """pandas ``category`` columns (and the like: polars ``Categorical``/``Enum``)."""
    return str(dtype).split("(")[0] in ("category", "Categorical", "Enum")


def categorical_mask(X, categorical_features):
    """Boolean mask of the categorical columns of ``X``, or ``None`` if there are none.

    ``categorical_features`` is ``"from_dtype"`` (the dataframe columns of a
    categorical dtype; none for arrays), ``None``, a boolean mask, integer
    indices or column names, as in
    :class:`~sklearn.ensemble.HistGradientBoostingClassifier`.
    """
    columns = getattr(X, "columns", None)
    if categorical_features is None:
        return None
    if isinstance(categorical_features, str) and categorical_features == "from_dtype":
        if columns is None or not hasattr(X, "dtypes"):
            return None
        mask = np.array([_is_categorical_dtype(d) for d in X.dtypes], dtype=bool)
        return mask if mask.any() else None
    spec = np.asarray(categorical_features)
    if spec.size == 0:
        return None
    if spec.dtype.kind == "O" and all(isinstance(v, str) for v in spec.ravel()):
        spec = spec.astype(str)
    if spec.ndim != 1 or spec.dtype.kind not in "biuU":
        raise ValueError(
            "categorical_features must be 'from_dtype', None, or a 1-D array-like "
            f"of bool, int or str; got {categorical_features!r}."
        )
    shape = np.shape(X)
    if len(shape) != 2:
        return None  # X itself is invalid: its validation says so.
    n_features = shape[1]
    mask = np.zeros(n_features, dtype=bool)
    if spec.dtype.kind == "b":
        if spec.shape[0] != n_features:
            raise ValueError(
                "categorical_features as a boolean mask must have one entry per "
                f"feature ({n_features}); got {spec.shape[0]}."
            )
        mask = spec.copy()
    elif spec.dtype.kind in "iu":
        if spec.min() < 0 or spec.max() >= n_features:
            raise ValueError(
                "categorical_features as integer indices must lie in "
                f"[0, {n_features - 1}]; got {spec.tolist()}."
            )
        mask[spec] = True
    else:
        if columns is None:
            raise ValueError(
                "categorical_features given as names needs X with column names "
                "(a DataFrame); pass indices or a boolean mask for arrays."
            )
        names = [str(c) for c in columns]
        unknown = [str(name) for name in spec if name not in names]
        if unknown:
            raise ValueError(
                f"categorical_features names {unknown} are not columns of X; "
                f"its columns are {names}."
            )
        mask[[names.index(name) for name in spec]] = True
    return mask if mask.any() else None


def split_columns(X, mask, estimator_name):
    """Validate ``X`` into ``(numeric, categorical)``.

    ``numeric`` is a float64 array (NaN allowed, infinity refused) of the
    columns where ``mask`` is false; ``categorical`` holds the other columns
    as given (a DataFrame stays a DataFrame), or is ``None``.
    """
    numeric_idx = np.flatnonzero(~mask)
    numeric = _safe_indexing(X, numeric_idx, axis=1)
    try:
        if len(numeric_idx):
            numeric = check_array(
                numeric, dtype=np.float64, ensure_all_finite="allow-nan",
                ensure_min_samples=1, input_name="X",
            )
        else:
            numeric = np.empty((X.shape[0], 0))
    except ValueError as exc:
        better = unreadable_columns(X, numeric_idx, estimator_name, exc)
        if better is exc:
            raise
        raise better from exc
    categorical = _safe_indexing(X, np.flatnonzero(mask), axis=1)
    return numeric, categorical


def unreadable_columns(X, columns, estimator_name, error):
    """``error``, or a ValueError naming the ``columns`` of ``X`` that are not numbers."""
    names = getattr(X, "columns", None)
    if "could not convert" not in str(error) or names is None:
        return error
    bad = [str(names[i]) for i in columns if not _convertible(_safe_indexing(X, [i], axis=1))]
    return ValueError(
        f"{estimator_name} could not read the columns {bad} as numbers. Mark "
        "them categorical: give them a pandas 'category' dtype "
        "(categorical_features='from_dtype') or list them in "
        "categorical_features."
    )


def _convertible(column):
    try:
        np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True


def _weighted_mean_std(values, weights):
    """Column means and standard deviations over the non-missing entries."""
    present = ~np.isnan(values)
    w = present * weights[:, None]
    total = w.sum(axis=0)
    safe_total = np.where(total > 0, total, 1.0)
    filled = np.where(present, values, 0.0)
    mean = (w * filled).sum(axis=0) / safe_total
    var = (w * (filled - mean) ** 2).sum(axis=0) / safe_total
    std = np.sqrt(var)
    return mean, np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)


class TabularEncoder:
    """Numeric columns standardised, missing values flagged, categories one-hot.

    Fitted on the training rows only. A numeric column is standardised with
    the weighted mean and standard deviation of its non-missing values; a
    missing value becomes 0 (the mean) and, for every column that had missing
    values in training, an indicator column says where (so the networks can
    learn from missingness). A categorical column becomes one 0/1 column per
    category seen in training, missing values included as a category of their
    own when training had them. A category unseen in training, or a missing
    value in a column that had none in training, encodes as all zeros.
    """

    def fit(self, numeric, categorical, weights):
        self.mean_, self.scale_ = _weighted_mean_std(numeric, weights)
        self.flagged_ = np.flatnonzero(np.isnan(numeric).any(axis=0))
        self.onehot_ = None
        if categorical is not None and categorical.shape[1] > 0:
            self.onehot_ = OneHotEncoder(
                handle_unknown="ignore", sparse_output=False, dtype=np.float32
            ).fit(categorical)
        return self

    def transform(self, numeric, categorical):
        missing = np.isnan(numeric)
        scaled = np.where(missing, 0.0, (numeric - self.mean_) / self.scale_)
        blocks = [scaled.astype(np.float32), missing[:, self.flagged_].astype(np.float32)]
        if self.onehot_ is not None:
            with warnings.catch_warnings():
                # Unknown categories encode as zeros, as documented.
                warnings.filterwarnings("ignore", "Found unknown categories")
                blocks.append(self.onehot_.transform(categorical))
        return np.hstack(blocks)
