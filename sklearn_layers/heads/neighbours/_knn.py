"""A probabilistic classifier interpolated with a similarity-weighted kNN."""

# SPDX-License-Identifier: BSD-3-Clause

from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ...utils._chunks import chunk_n_rows
from ...utils._compat import (
    HasMethods,
    Interval,
    StrOptions,
    _fit_context,
    validate_data,
)
from ...utils._repr import ReprMixin
from .._rowwise import l2_normalize
from .._validation import check_at_least_two_classes
from ..probe._default import default_probe

# Blocks of at most this many query x training rows: on 15,000 x 512 float32
# training rows and 5,000 queries, 2048 x 2048 blocks took 0.73x the time of
# blocks of all training rows (what the default working_memory of 1 GiB would
# allow), whose similarities no longer stay in cache.
_MAX_BLOCK_ROWS = 2048


class KNNInterpolatedClassifier(ReprMixin, ClassifierMixin, BaseEstimator):
    """Probabilistic classifier interpolated with a similarity-weighted kNN.

    ``predict_proba = (1 - knn_weight) * p_estimator + knn_weight * p_knn``,
    where ``p_estimator`` comes from `estimator` (by default a standardised
    logistic regression) and ``p_knn`` from the training samples most similar
    to the query, as in "Rethinking Nearest Neighbors for Visual
    Classification" [1]_: each of the `n_neighbors` nearest training samples,
    of similarity ``s``, adds ``exp(s / temperature)`` to its class, and the
    sums are normalised to probabilities.

    Works on any 2-D numeric `X`: features of a network layer or plain
    tabular data.

    Parameters
    ----------
    estimator : estimator object, default=None
        Classifier with ``fit`` and ``predict_proba``, cloned and fitted on
        `X` at :meth:`fit`. ``None`` means :func:`default_probe`, a
        standardised logistic regression: the standardisation matters on
        layer features, whose variance can be tiny. Not fitted
        (``estimator_`` is None) when ``knn_weight=1``.

    n_neighbors : int, default=16
        Number of neighbours ``k``. When the training set has fewer samples,
        all of them are used.

    temperature : float, default=0.07
        Temperature of the neighbour weights ``exp(s / temperature)``; small
        values favour the closest neighbours. 0.07 is the usual value for
        cosine similarities of deep features [1]_ [2]_.

    knn_weight : float in [0, 1], default=0.5
        Interpolation weight ``lambda`` of the kNN probabilities. 0 gives
        exactly the estimator's probabilities, 1 a pure similarity-weighted
        kNN (the neighbour search is skipped at 0, the estimator at 1).

    metric : {"cosine", "euclidean"}, default="cosine"
        Similarity of the (normalised) features: cosine similarity, or the
        negative Euclidean distance.

    normalize : {"center_l2", "l2"} or None, default="center_l2"
        Transformation applied to the features before the neighbour search
        (not to the estimator's input). ``"center_l2"`` subtracts the
        training mean then scales each row to unit L2 norm, as the reference
        code of [1]_ does; ``"l2"`` only scales; ``None`` keeps the features
        (with ``metric="cosine"`` rows are then still compared by angle).

    working_memory : float or None, default=None
        Memory, in MiB, that the temporary blocks of the neighbour search may
        take, as in :func:`sklearn.metrics.pairwise_distances_chunked`;
        ``None`` means ``sklearn.get_config()["working_memory"]``. Blocks
        compare at most 2048 query rows with at most 2048 training rows (the
        fastest size, as they stay in cache), fewer when `working_memory`
        asks for less. The results do not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.

    estimator_ : estimator object or None
        The fitted clone of `estimator`; None when ``knn_weight=1``.

    center_ : ndarray of shape (n_features,)
        Vector subtracted from every sample before the neighbour search: the
        training mean when ``normalize="center_l2"``; the training mean
        rounded to integers for ``metric="euclidean", normalize=None`` (a
        shift changes no distance, but centred values round better); else
        zeros.

    n_samples_fit_ : int
        Number of training samples the neighbours are searched among.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.neighbors.KNeighborsClassifier : kNN with uniform or distance
        weights.
    PrototypeClassifier : One prototype per class instead of every sample.

    Notes
    -----
    **Neighbour search.** Brute force, by matrix products of blocks of query
    rows and training rows (sized by `working_memory`) in the dtype of `X`
    (float32 stays float32), keeping a running top-k per query. Neighbours
    are ordered by decreasing similarity; exact ties go to the lower training
    index, so the result is deterministic and independent of
    `working_memory` (up to the last bit of the block products).

    **Self-matches.** Nothing is excluded when you pass `X`: a training
    sample queried again is its own nearest neighbour (similarity 1), exactly
    as in :class:`~sklearn.neighbors.KNeighborsClassifier`, so a score on the
    training set is optimistic; estimate accuracy on held-out data or with
    cross-validation (the kNN part is then built from the training folds
    only, so nothing leaks). Nothing is scored at :meth:`fit` time. To see
    the training set's neighbours without self-matches call
    :meth:`kneighbors` with ``X=None``: each training sample is excluded
    from its own neighbour list (by index, so a duplicate row still counts).

    The estimator is fitted on the validated `X` (a numpy array), not on the
    normalised features.

    References
    ----------
    .. [1] Jia, M., Chen, B.-C., Wu, Z., Cardie, C., Belongie, S., & Lim,
       S.-N. (2021). Rethinking nearest neighbors for visual classification.
       arXiv:2112.08459.
    .. [2] Wu, Z., Xiong, Y., Yu, S. X., & Lin, D. (2018). Unsupervised
       feature learning via non-parametric instance discrimination. CVPR.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers.heads import KNNInterpolatedClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = KNNInterpolatedClassifier(n_neighbors=5, knn_weight=0.5).fit(X, y)
    >>> clf.predict(X[[0, 50, 100]])
    array([0, 1, 2])
    >>> clf.predict_proba(X[[0]]).round(2)
    array([[0.99, 0.01, 0.  ]])
    >>> distances, indices = clf.kneighbors(X[[0]], n_neighbors=3)
    >>> indices
    array([[ 0, 27, 17]])
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit", "predict_proba"]), None],
        "n_neighbors": [Interval(Integral, 1, None, closed="left")],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "knn_weight": [Interval(Real, 0, 1, closed="both")],
        "metric": [StrOptions({"cosine", "euclidean"})],
        "normalize": [StrOptions({"center_l2", "l2"}), None],
        "working_memory": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(
        self,
        estimator=None,
        *,
        n_neighbors=16,
        temperature=0.07,
        knn_weight=0.5,
        metric="cosine",
        normalize="center_l2",
        working_memory=None,
    ):
        self.estimator = estimator
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.knn_weight = knn_weight
        self.metric = metric
        self.normalize = normalize
        self.working_memory = working_memory

    # False: the user's `estimator` is validated when its own fit runs.
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Store the normalised training features and fit the estimator.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.

        y : array-like of shape (n_samples,)
            Target labels; at least two classes.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        classes, y_ind = np.unique(y, return_inverse=True)
        check_at_least_two_classes(classes, type(self).__name__)
        self.classes_ = classes
        self.n_samples_fit_ = X.shape[0]
        if self.normalize == "center_l2":
            self.center_ = X.mean(axis=0, dtype=np.float64)
        elif self.metric == "euclidean" and self.normalize is None:
            # Raw Euclidean distances do not change under a shift. Shifting by
            # the mean rounded to integers keeps |q|^2 - 2 q.t + |t|^2 from
            # cancelling in float32 far from the origin, while integer data
            # stay exact (so exact ties stay exact ties).
            self.center_ = np.round(X.mean(axis=0, dtype=np.float64))
        else:
            self.center_ = np.zeros(X.shape[1])
        self._fit_y = y_ind
        self._fit_X = self._transform(X)
        self._fit_sq_norms = np.einsum(
            "ij,ij->i", self._fit_X, self._fit_X, dtype=np.float64
        )
        self.estimator_ = None
        if self.knn_weight < 1:
            if self.estimator is None:
                estimator = default_probe()
            else:
                estimator = clone(self.estimator)
            self.estimator_ = estimator.fit(X, y)
            self._estimator_columns = _columns_of(self.estimator_.classes_, classes)
        return self

    def _transform(self, X):
        """Centre and/or L2-normalise rows as `normalize` and `metric` ask."""
        Z = X - self.center_.astype(X.dtype, copy=False)
        if self.normalize is not None or self.metric == "cosine":
            l2_normalize(Z, out=Z)
        return Z

    def _check_X(self, X):
        check_is_fitted(self)
        return validate_data(self, X, reset=False, dtype=[np.float64, np.float32])

    def _search(self, X, k):
        """Top-k similarities (n, k), decreasing, and training indices (n, k).

        ``X=None`` queries the training set itself, excluding self-matches.
        """
        fit_X = self._fit_X
        exclude_self = X is None
        n_fit = fit_X.shape[0]
        n_query = n_fit if exclude_self else X.shape[0]
        query_step, fit_step = self._block_sizes(n_query, n_fit)
        sims = np.empty((n_query, k))
        indices = np.empty((n_query, k), dtype=np.intp)
        for q0 in range(0, n_query, query_step):
            q1 = min(q0 + query_step, n_query)
            if exclude_self:
                query = fit_X[q0:q1]
            else:
                query = self._transform(X[q0:q1]).astype(fit_X.dtype, copy=False)
            # running top-k, sorted by (similarity desc, index asc); the -inf
            # placeholders are all replaced since k <= available neighbours
            best_key = np.full((q1 - q0, k), -np.inf, dtype=fit_X.dtype)
            best_idx = np.full((q1 - q0, k), -1, dtype=np.intp)
            for t0 in range(0, n_fit, fit_step):
                t1 = min(t0 + fit_step, n_fit)
                key = query @ fit_X[t0:t1].T
                if self.metric == "euclidean":
                    # ranking by -|q - t|^2 = 2 q.t - |t|^2 - |q|^2 (|q| fixed)
                    key *= 2
                    key -= self._fit_sq_norms[t0:t1].astype(key.dtype)
                if exclude_self and t0 < q1 and q0 < t1:
                    own = np.arange(max(q0, t0), min(q1, t1))
                    key[own - q0, own - t0] = -np.inf
                _merge_top_k(best_key, best_idx, key, t0)
            best_key = best_key.astype(np.float64)
            if self.metric == "euclidean":
                sq = np.einsum("ij,ij->i", query, query, dtype=np.float64)
                best_key = -np.sqrt(np.maximum(sq[:, None] - best_key, 0.0))
            sims[q0:q1] = best_key
            indices[q0:q1] = best_idx
        return sims, indices

    def _block_sizes(self, n_query, n_fit):
        """Query rows and training rows per block of the search.

        Each (query, training row) pair of a block holds its similarity, a
        comparison mask byte and, in a row's first block, the int64 position
        ``argpartition`` returns: that is what `working_memory` bounds.
        """
        pair_bytes = self._fit_X.dtype.itemsize + 1 + np.dtype(np.intp).itemsize
        budget = self.working_memory
        fit_step = min(n_fit, _MAX_BLOCK_ROWS, chunk_n_rows(pair_bytes, budget))
        query_step = min(
            max(n_query, 1),
            _MAX_BLOCK_ROWS,
            chunk_n_rows(pair_bytes * fit_step, budget),
        )
        return query_step, fit_step

    def _knn_proba(self, sims, indices):
        """Normalised class sums of ``exp(s / temperature)`` over the neighbours."""
        n, n_classes = sims.shape[0], len(self.classes_)
        weights = np.exp((sims - sims[:, :1]) / self.temperature)
        flat = np.arange(n)[:, None] * n_classes + self._fit_y[indices]
        proba = np.bincount(
            flat.ravel(), weights=weights.ravel(), minlength=n * n_classes
        ).reshape(n, n_classes)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Training samples nearest to each query, the ones the kNN part uses.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query samples. ``None`` queries the training samples, each
            excluded from its own neighbours (leave-one-out).

        n_neighbors : int, default=None
            Number of neighbours; by default those used for prediction,
            ``min(self.n_neighbors, n_samples_fit_)`` (minus one for
            ``X=None``).

        return_distance : bool, default=True
            Whether to return the distances.

        Returns
        -------
        neigh_dist : ndarray of shape (n_queries, n_neighbors)
            Distances in the normalised feature space, increasing: ``1 -
            cosine similarity`` for ``metric="cosine"``, Euclidean distance
            for ``metric="euclidean"``. Only present if
            ``return_distance=True``.

        neigh_ind : ndarray of shape (n_queries, n_neighbors)
            Indices of the neighbours in the training data given to
            :meth:`fit`.
        """
        check_is_fitted(self)
        available = self.n_samples_fit_ - (X is None)
        if n_neighbors is None:
            n_neighbors = min(self.n_neighbors, available)
        elif (
            isinstance(n_neighbors, (bool, np.bool_))
            or not isinstance(n_neighbors, Integral)
            or n_neighbors < 1
        ):
            raise ValueError(
                f"n_neighbors must be a positive integer; got {n_neighbors!r}."
            )
        if n_neighbors > available:
            raise ValueError(
                f"Expected n_neighbors <= {available} (the number of training "
                f"samples{' minus the query itself' if X is None else ''}); "
                f"got n_neighbors={n_neighbors}."
            )
        if X is not None:
            X = self._check_X(X)
        sims, indices = self._search(X, int(n_neighbors))
        if not return_distance:
            return indices
        distances = 1.0 - sims if self.metric == "cosine" else -sims
        return distances, indices

    def predict_proba(self, X):
        """Interpolated class probabilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            ``(1 - knn_weight) * p_estimator + knn_weight * p_knn``, columns
            in the order of `classes_`.
        """
        X = self._check_X(X)
        weight = self.knn_weight
        if weight < 1:
            if self.estimator_ is None:
                raise ValueError(
                    "This KNNInterpolatedClassifier was fitted with knn_weight=1, "
                    "so its estimator was not fitted; call fit again after "
                    f"setting knn_weight={weight}."
                )
            proba = np.zeros((X.shape[0], len(self.classes_)))
            proba[:, self._estimator_columns] = self.estimator_.predict_proba(X)
            if weight == 0:
                return proba
            proba *= 1.0 - weight
        else:
            proba = 0.0
        k = min(self.n_neighbors, self.n_samples_fit_)
        return proba + weight * self._knn_proba(*self._search(X, k))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba` (``-inf`` where it is 0).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Log class probabilities, columns in the order of `classes_`.
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """Class of highest interpolated probability.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Predicted class labels.
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


def _top_k_positions(key, k):
    """Column positions of the k largest entries of each row (unordered).

    Exact ties at the k-th value go to the lowest positions, so that the
    chosen set does not depend on how the columns were split into blocks.
    """
    n_cols = key.shape[1]
    if k >= n_cols:
        return np.broadcast_to(np.arange(n_cols), key.shape).copy()
    pos = np.argpartition(key, n_cols - k, axis=1)[:, n_cols - k :]
    kth = np.take_along_axis(key, pos, axis=1).min(axis=1)
    tied = np.flatnonzero(np.count_nonzero(key >= kth[:, None], axis=1) > k)
    for row in tied:
        cand = np.flatnonzero(key[row] >= kth[row])
        pos[row] = cand[np.argsort(-key[row, cand], kind="stable")[:k]]
    return pos


def _merge_top_k(best_key, best_idx, key, offset):
    """Merge block ``key`` (columns = training rows ``offset...``) into the top-k.

    ``best_key``/``best_idx`` (n, k) hold the running top-k of earlier blocks,
    sorted by (key desc, index asc), and are updated in place. Only entries
    above a row's current k-th key can enter (an equal key loses on index),
    so after the first block few entries are looked at again; rows with more
    than k such entries are first cut to their k best by ``argpartition``.
    The at most k newcomers of each row are laid out in increasing index
    after the old top-k, so one stable sort on the key orders by (key desc,
    index asc).
    """
    n, k = best_idx.shape
    n_cols = key.shape[1]
    new_key = np.full((n, k), -np.inf, dtype=key.dtype)
    new_idx = np.full((n, k), -1, dtype=np.intp)
    if np.isneginf(best_key[:, -1]).all():  # first block: nothing to beat yet
        pos = np.sort(_top_k_positions(key, min(k, n_cols)), axis=1)
        new_key[:, : pos.shape[1]] = np.take_along_axis(key, pos, axis=1)
        new_idx[:, : pos.shape[1]] = pos + offset
    else:
        flat = _flat_true(key > best_key[:, -1:])
        if flat.size == 0:
            return
        rows, cols = np.divmod(flat, n_cols)  # sorted by row, then column
        count = np.bincount(rows, minlength=n)
        heavy = np.flatnonzero(count > k)
        if heavy.size:
            light = count[rows] <= k
            rows, cols = rows[light], cols[light]
            sub = key[heavy]
            pos = np.sort(_top_k_positions(sub, k), axis=1)
            new_key[heavy] = np.take_along_axis(sub, pos, axis=1)
            new_idx[heavy] = pos + offset
            count[heavy] = 0
        slot = np.arange(rows.size) - (np.cumsum(count) - count)[rows]
        new_key[rows, slot] = key[rows, cols]
        new_idx[rows, slot] = cols + offset
    cand_key = np.concatenate([best_key, new_key], axis=1)
    cand_idx = np.concatenate([best_idx, new_idx], axis=1)
    order = np.argsort(-cand_key, axis=1, kind="stable")[:, :k]
    best_key[...] = np.take_along_axis(cand_key, order, axis=1)
    best_idx[...] = np.take_along_axis(cand_idx, order, axis=1)


def _flat_true(mask):
    """``np.flatnonzero(mask)``, several times faster on a sparse boolean mask.

    Scans the mask eight bytes at a time and only looks inside the words
    that hold a True.
    """
    flat = mask.reshape(-1).view(np.uint8)
    n8 = flat.size - flat.size % 8
    words = np.ascontiguousarray(flat[:n8]).view(np.uint64)
    hit = np.flatnonzero(words)
    r, c = np.nonzero(flat[:n8].reshape(-1, 8)[hit])
    tail = np.flatnonzero(flat[n8:]) + n8
    return np.concatenate([hit[r] * 8 + c, tail])


def _columns_of(estimator_classes, classes):
    """Positions in `classes` of the estimator's classes (checked)."""
    cols = np.searchsorted(classes, estimator_classes)
    cols = np.minimum(cols, len(classes) - 1)
    if len(estimator_classes) == 0 or not np.array_equal(
        classes[cols], estimator_classes
    ):
        raise ValueError(
            f"The estimator's classes_ {estimator_classes!r} are not among the "
            f"classes of y {classes!r}."
        )
    return cols
