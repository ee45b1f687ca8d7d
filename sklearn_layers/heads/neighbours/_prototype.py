"""Prototype (nearest class mean) classifier with class-incremental learning."""

# SPDX-License-Identifier: BSD-3-Clause

from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ...utils._chunks import row_chunks
from ...utils._compat import Interval, StrOptions, _fit_context, validate_data
from ...utils._repr import ReprMixin
from .._decision import DecisionClassifierMixin
from .._rowwise import l2_normalize, softmax
from .._validation import check_at_least_two_classes

# Rows of X per chunk of the scores: about 8 MiB of float64 temporaries.
_CHUNK_MIB = 8


class PrototypeClassifier(DecisionClassifierMixin, ReprMixin, ClassifierMixin, BaseEstimator):
    """Prototype classifier: one mean vector per class, softmax over similarities.

    Each class is represented by its prototype, the mean of its training
    samples (optionally shrunk toward the mean of all samples). A sample gets
    the class of the most similar prototype, and :meth:`predict_proba` is a
    softmax over the similarities divided by `temperature`, as in prototypical
    networks [1]_. :meth:`partial_fit` updates the running class means and
    accepts classes never seen before, so new classes can be added from a few
    samples each (class-incremental, few-shot learning). The prototypes of
    such new classes can be calibrated toward similar base-class prototypes
    without any training, as in TEEN [2]_.

    Works on any 2-D numeric `X`: features of a network layer or plain
    tabular data.

    Parameters
    ----------
    metric : {"cosine", "euclidean"}, default="cosine"
        Similarity between a sample and a prototype. ``"cosine"``: cosine
        similarity (both vectors L2-normalised). ``"euclidean"``: negative
        Euclidean distance; with ``shrinkage=None`` and ``calibration=None``
        :meth:`predict` then returns what
        :class:`~sklearn.neighbors.NearestCentroid` predicts.

    temperature : float, default=1.0
        Softmax temperature of :meth:`predict_proba`: the probabilities are
        ``softmax(decision / temperature)``. Cosine similarities lie in
        ``[-1, 1]``, so with ``metric="cosine"`` the default gives soft
        probabilities; a smaller value (e.g. 0.1) sharpens them. It does not
        change :meth:`predict`.

    shrinkage : float in [0, 1] or None, default=None
        Pulls every prototype toward the mean of all training samples:
        ``prototype = (1 - shrinkage) * class_mean + shrinkage * global_mean``.
        ``None`` or 0 keeps the class means.

    calibration : {"teen"} or None, default=None
        Training-free calibration of the prototypes of new classes, those
        that first receive samples in a call to :meth:`partial_fit` after the
        first call to :meth:`fit` or :meth:`partial_fit`. With ``"teen"``,
        each new prototype ``p`` (L2-normalised) is moved toward the base
        prototypes ``B`` (L2-normalised rows) that resemble it [2]_::

            w = softmax(p @ B.T / calibration_temperature)
            delta = normalize(w @ B)
            p' = (1 - calibration_weight) * p + calibration_weight * delta

        With ``metric="euclidean"`` the weights ``w`` are computed the same
        way but ``delta = w @ B_raw`` is the weighted mean of the raw
        (unnormalised) base prototypes and ``p`` stays unnormalised, so that
        the calibrated prototype lives in the space of the distances.

    calibration_weight : float in [0, 1], default=0.5
        Weight ``alpha`` of the base-class term in the calibration.

    calibration_temperature : float, default=0.0625
        Temperature of the softmax over cosine similarities between a new
        prototype and the base prototypes (the similarities are divided by
        it); the default is ``1 / 16``, the scale 16 of [2]_. Smaller values
        move a new prototype toward its most similar base prototypes only.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.

    class_count_ : ndarray of shape (n_classes,)
        Number of training samples seen for each class. It is 0 for a class
        announced through ``partial_fit(..., classes=...)`` that has no sample
        yet; such a class is never predicted until it gets one.

    class_means_ : ndarray of shape (n_classes, n_features)
        Running mean of the samples of each class (NaN for a class without
        samples), before shrinkage and calibration.

    prototypes_ : ndarray of shape (n_classes, n_features)
        The prototypes that :meth:`decision_function` compares samples with:
        class means after shrinkage and, for new classes, calibration.

    global_mean_ : ndarray of shape (n_features,)
        Mean of all the training samples seen.

    base_class_mask_ : ndarray of shape (n_classes,), dtype=bool
        True for the base classes: those that had samples after the first
        call to :meth:`fit` or :meth:`partial_fit`. Only the other classes
        are calibrated.

    n_features_in_ : int
        Number of features seen during :term:`fit`.

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of features seen during :term:`fit`. Defined only when `X`
        has feature names that are all strings.

    See Also
    --------
    sklearn.neighbors.NearestCentroid : Nearest centroid classifier (Euclidean
        or Manhattan, no probabilities, no incremental learning).
    KNNInterpolatedClassifier : Linear probe interpolated with a weighted kNN.

    Notes
    -----
    Fitting costs one pass over `X`; predicting costs one matrix product with
    the ``(n_classes, n_features)`` prototypes, done in chunks of rows so that
    memory stays bounded. Class means are accumulated in float64.

    :meth:`fit` forgets everything learnt before; :meth:`partial_fit` adds to
    it. Running means from several :meth:`partial_fit` calls equal the means
    of the concatenated data (up to rounding).

    For two classes :meth:`decision_function` returns, as scikit-learn's
    classifiers do, one score per sample: the similarity to the second class
    minus the similarity to the first.

    References
    ----------
    .. [1] Snell, J., Swersky, K., & Zemel, R. (2017). Prototypical networks
       for few-shot learning. Advances in Neural Information Processing
       Systems 30.
    .. [2] Wang, Q.-W., Zhou, D.-W., Zhang, Y.-K., Zhan, D.-C., & Ye, H.-J.
       (2023). Few-shot class-incremental learning via training-free prototype
       calibration. Advances in Neural Information Processing Systems 36.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_layers.heads import PrototypeClassifier
    >>> X = np.array([[-1, -1], [-2, -1], [-3, -2], [1, 1], [2, 1], [3, 2]])
    >>> y = np.array([1, 1, 1, 2, 2, 2])
    >>> clf = PrototypeClassifier(metric="euclidean").fit(X, y)
    >>> clf.predict([[-0.8, -1]])
    array([1])
    >>> clf.prototypes_
    array([[-2.        , -1.33333333],
           [ 2.        ,  1.33333333]])

    A class never seen before is added with :meth:`partial_fit`:

    >>> clf = clf.partial_fit([[0, 5], [1, 6]], [3, 3])
    >>> clf.classes_
    array([1, 2, 3])
    >>> clf.predict([[0, 4]])
    array([3])
    """

    _parameter_constraints: dict = {
        "metric": [StrOptions({"cosine", "euclidean"})],
        "temperature": [Interval(Real, 0, None, closed="neither")],
        "shrinkage": [Interval(Real, 0, 1, closed="both"), None],
        "calibration": [StrOptions({"teen"}), None],
        "calibration_weight": [Interval(Real, 0, 1, closed="both")],
        "calibration_temperature": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        metric="cosine",
        temperature=1.0,
        shrinkage=None,
        calibration=None,
        calibration_weight=0.5,
        calibration_temperature=0.0625,
    ):
        self.metric = metric
        self.temperature = temperature
        self.shrinkage = shrinkage
        self.calibration = calibration
        self.calibration_weight = calibration_weight
        self.calibration_temperature = calibration_temperature

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit one prototype per class, forgetting any previous fit.

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
        check_at_least_two_classes(np.unique(y), type(self).__name__)
        return self._learn(X, y, classes=None, first_call=True)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None):
        """Update the running class means with a batch; new classes are welcome.

        Unlike scikit-learn's incremental classifiers, `classes` need not be
        given at the first call: a label never seen before adds a class
        (class-incremental learning). Classes that first get samples after the
        first call are the *new* classes that ``calibration="teen"``
        calibrates.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data of the batch.

        y : array-like of shape (n_samples,)
            Target labels of the batch.

        classes : array-like of shape (n_classes,), default=None
            Labels to add to `classes_` even if they have no sample in this
            batch; they are not predicted until they get samples.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        first_call = not hasattr(self, "classes_")
        X, y = validate_data(
            self, X, y, dtype=[np.float64, np.float32], reset=first_call
        )
        check_classification_targets(y)
        return self._learn(X, y, classes=classes, first_call=first_call)

    def _learn(self, X, y, *, classes, first_call):
        """Add a validated batch to the running means (from scratch if first)."""
        all_classes = np.unique(y)
        if classes is not None:
            all_classes = _merge_labels(all_classes, np.asarray(classes).ravel())
        if not first_call:
            all_classes = _merge_labels(self.classes_, all_classes)
        n_classes, n_features = len(all_classes), X.shape[1]
        counts = np.zeros(n_classes)
        means = np.full((n_classes, n_features), np.nan)
        base = np.zeros(n_classes, dtype=bool)
        if not first_call:
            old = np.searchsorted(all_classes, self.classes_)
            counts[old] = self.class_count_
            means[old] = self.class_means_
            base[old] = self.base_class_mask_
        sums, batch_counts = _class_sums(
            X, np.searchsorted(all_classes, y), n_classes
        )
        total = counts + batch_counts
        fresh = (batch_counts > 0) & (counts == 0)
        update = (batch_counts > 0) & (counts > 0)
        # fresh classes: sums / counts, bit-for-bit the mean NearestCentroid takes
        means[fresh] = sums[fresh] / total[fresh, None]
        means[update] = (
            means[update] * (counts[update] / total[update])[:, None]
            + sums[update] / total[update, None]
        )
        self.classes_ = all_classes
        self.class_count_ = total
        self.class_means_ = means
        self.base_class_mask_ = (total > 0) if first_call else base
        self._update_prototypes()
        return self

    def _update_prototypes(self):
        seen = self.class_count_ > 0
        counts = self.class_count_[seen]
        means = self.class_means_[seen]
        self.global_mean_ = (counts @ means) / counts.sum()
        prototypes = self.class_means_.copy()
        if self.shrinkage:
            prototypes[seen] = (1.0 - self.shrinkage) * means + (
                self.shrinkage * self.global_mean_
            )
        if self.calibration == "teen":
            new = seen & ~self.base_class_mask_
            base = seen & self.base_class_mask_
            if new.any() and base.any():
                prototypes[new] = _teen_calibrate(
                    prototypes[new],
                    prototypes[base],
                    weight=self.calibration_weight,
                    temperature=self.calibration_temperature,
                    metric=self.metric,
                )
        self.prototypes_ = prototypes

    def _scores(self, X):
        """Similarity of every row of X to every prototype, shape (n, n_classes)."""
        seen = self.class_count_ > 0
        prototypes = np.where(seen[:, None], self.prototypes_, 0.0)
        scores = np.empty((X.shape[0], len(self.classes_)))
        if self.metric == "cosine":
            unit = l2_normalize(prototypes)
            for rows in row_chunks(X.shape[0], 8 * X.shape[1], _CHUNK_MIB):
                chunk = l2_normalize(X[rows].astype(np.float64))
                np.matmul(chunk, unit.T, out=scores[rows])
        else:
            # Distances are computed around the training mean: translation
            # invariant, and far less cancellation in |x|^2 - 2 x.p + |p|^2.
            centred = prototypes - self.global_mean_
            sq_norms = np.einsum("ij,ij->i", centred, centred)
            for rows in row_chunks(X.shape[0], 8 * X.shape[1], _CHUNK_MIB):
                chunk = X[rows] - self.global_mean_
                sq = np.matmul(chunk, centred.T, out=scores[rows])
                sq *= -2.0
                sq += np.einsum("ij,ij->i", chunk, chunk)[:, None]
                sq += sq_norms
                np.maximum(sq, 0.0, out=sq)
                np.sqrt(sq, out=sq)
                np.negative(sq, out=sq)
        scores[:, ~seen] = -np.inf
        return scores

    def _validated_scores(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._scores(X)

    def decision_function(self, X):
        """Similarity of each sample to each prototype.

        Cosine similarity for ``metric="cosine"``, negative Euclidean distance
        for ``metric="euclidean"``; ``-inf`` for a class without samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Input data.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            For two classes, the score of the second class minus the score of
            the first (positive means `classes_[1]`).
        """
        scores = self._validated_scores(X)
        if scores.shape[1] == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    @property
    def _proba_temperature(self):
        """`temperature`: :meth:`predict_proba` is the softmax of the scores over it."""
        return self.temperature


def _class_sums(X, y_ind, n_classes):
    """Per-class sums (float64) and counts of the rows of X, one class at a time.

    Rows of a class are summed in their original order with numpy's pairwise
    summation, so ``sums / counts`` is bit-for-bit ``X[y == c].mean(axis=0)``
    for float64 input (what NearestCentroid computes).
    """
    counts = np.bincount(y_ind, minlength=n_classes)
    order = np.argsort(y_ind, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    sums = np.zeros((n_classes, X.shape[1]))
    for c in np.flatnonzero(counts):
        rows = order[bounds[c] : bounds[c + 1]]
        sums[c] = X[rows].sum(axis=0, dtype=np.float64)
    return sums, counts.astype(np.float64)


def _merge_labels(known, labels):
    """Sorted union of two label arrays, refusing to mix numbers and strings."""
    if (known.dtype.kind in "biuf") != (labels.dtype.kind in "biuf"):
        raise ValueError(
            "partial_fit got labels of another type than the classes it "
            f"already has: {known.dtype} {known[:5]!r} and {labels.dtype} "
            f"{labels[:5]!r}."
        )
    return np.unique(np.concatenate([known, labels]))


def _teen_calibrate(new, base, *, weight, temperature, metric):
    """TEEN calibration of new prototypes toward base prototypes (see class doc)."""
    base_unit = l2_normalize(base)
    new_unit = l2_normalize(new)
    w = softmax(new_unit @ base_unit.T, temperature)
    if metric == "cosine":
        delta = l2_normalize(w @ base_unit)
        return (1.0 - weight) * new_unit + weight * delta
    return (1.0 - weight) * new + weight * (w @ base)
