"""Tabular input for the GrowNet estimators: categorical columns, missing values, scaling.

:func:`categorical_mask` reads ``categorical_features`` as
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` does;
:func:`split_columns` validates ``X`` into a numeric block (NaN allowed) and a
categorical block; :class:`TabularEncoder`, fitted on the training rows only,
turns both into one float32 matrix for the networks.
"""

import numpy as np
from sklearn.preprocessing import OneHotEncoder
from sklearn.utils import check_array

from ...utils._compat import _safe_indexing


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
    check_numeric_columns(X, numeric_idx, estimator_name)
    numeric = _safe_indexing(X, numeric_idx, axis=1)
    if len(numeric_idx):
        numeric = check_array(
            numeric, dtype=np.float64, ensure_all_finite="allow-nan",
            ensure_min_samples=1, input_name="X",
        )
    else:
        numeric = np.empty((X.shape[0], 0))
    categorical = _safe_indexing(X, np.flatnonzero(mask), axis=1)
    return numeric, categorical


# dtype kinds read as numbers without looking at the values: bool, integers,
# floats, complex (which check_array refuses with its own message).
_NUMERIC_KINDS = frozenset("biufc")


def check_numeric_columns(X, columns, estimator_name):
    """Refuse, naming them, the ``columns`` of ``X`` whose values are not numbers.

    ``columns`` holds column indices, or is ``None`` for all columns.

    The dtypes are read first, as HistGradientBoosting reads them to find
    categorical columns: a column of a numeric or boolean dtype passes without
    a look at its values; a column of another dtype (object, string,
    category, datetime) passes only if its values convert to float64. Input
    that is not a 2-D table or array is left to the validation that follows.
    """
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and not hasattr(dtypes, "kind"):  # a dataframe
        dtypes = list(dtypes)
        columns = range(len(dtypes)) if columns is None else columns
        suspects = [i for i in columns if getattr(dtypes[i], "kind", "O") not in _NUMERIC_KINDS]
    elif getattr(X, "ndim", None) == 2 and X.dtype.kind not in _NUMERIC_KINDS:
        suspects = list(range(X.shape[1]) if columns is None else columns)
    else:
        return
    names = getattr(X, "columns", None)
    bad = [i for i in suspects if not _convertible(X, i, names)]
    if not bad:
        return
    if names is not None:
        bad = [str(names[i]) for i in bad]
        how = (
            "give them a pandas 'category' dtype (categorical_features="
            "'from_dtype') or list them in categorical_features"
        )
    else:
        bad = [int(i) for i in bad]
        how = "list their indices in categorical_features"
    raise ValueError(
        f"{estimator_name} could not read the columns {bad} as numbers. Mark "
        f"them categorical: {how}."
    )


def _convertible(X, index, names):
    """Whether column ``index`` converts to float64 (strings that are not numbers do not).

    Values that are neither strings nor numbers (a dict, an object) raise
    numpy's TypeError, with a note naming the column.
    """
    try:
        np.asarray(_safe_indexing(X, [index], axis=1), dtype=np.float64)
    except ValueError:
        return False
    except TypeError as exc:
        exc.add_note(f"In column {index if names is None else str(names[index])!r} of X.")
        raise
    return True


def weighted_mean_std(values, weights):
    """Column means and standard deviations over the non-missing entries.

    Scale-invariant: each column is divided by its largest absolute value
    before the squares are taken, so columns of 1e-200 or 1e200 neither
    underflow nor overflow. A column is constant (scale 1) when its spread is
    within float64 rounding of its magnitude.
    """
    present = ~np.isnan(values)
    w = present * weights[:, None]
    total = w.sum(axis=0)
    safe_total = np.where(total > 0, total, 1.0)
    filled = np.where(present, values, 0.0)
    magnitude = np.abs(filled).max(axis=0, initial=0.0)
    magnitude = np.where(magnitude > 0, magnitude, 1.0)
    unit = filled / magnitude
    mean = (w * unit).sum(axis=0) / safe_total
    std = np.sqrt((w * (unit - mean) ** 2).sum(axis=0) / safe_total)
    constant = std <= 1e-12 * np.maximum(np.abs(mean), np.finfo(np.float64).tiny)
    constant |= std == 0
    return mean * magnitude, np.where(constant, 1.0, std * magnitude)


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
        self.mean_, self.scale_ = weighted_mean_std(numeric, weights)
        self.flagged_ = np.flatnonzero(np.isnan(numeric).any(axis=0))
        self.onehot_ = None
        if categorical is not None and categorical.shape[1] > 0:
            self.onehot_ = OneHotEncoder(
                handle_unknown="ignore", sparse_output=False, dtype=np.float32
            ).fit(categorical)
        return self

    def column_groups(self):
        """The encoded columns of each input feature, a list of index arrays.

        A numeric column with its missingness indicator, a categorical column
        with its one-hot columns.
        """
        n_numeric = len(self.mean_)
        groups = [[j] for j in range(n_numeric)]
        for k, j in enumerate(self.flagged_):
            groups[j].append(n_numeric + k)
        start = n_numeric + len(self.flagged_)
        for categories in [] if self.onehot_ is None else self.onehot_.categories_:
            groups.append(list(range(start, start + len(categories))))
            start += len(categories)
        return [np.asarray(g) for g in groups]

    def transform(self, numeric, categorical):
        missing = np.isnan(numeric)
        scaled = np.where(missing, 0.0, (numeric - self.mean_) / self.scale_)
        blocks = [scaled.astype(np.float32), missing[:, self.flagged_].astype(np.float32)]
        if self.onehot_ is not None:
            # handle_unknown="ignore" without `drop`: unknown categories encode
            # as zeros, without a warning.
            blocks.append(self.onehot_.transform(categorical))
        return np.hstack(blocks)
