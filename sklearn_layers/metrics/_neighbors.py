"""Nearest-neighbour measures: TwoNN intrinsic dimension, leave-one-out kNN."""

import numpy as np
from sklearn.metrics import pairwise_distances_chunked

from ._validation import check_features, check_labels, check_positive_int


def _without_self(distances, start):
    rows = np.arange(len(distances))
    distances[rows, start + rows] = np.inf
    return distances


def _two_nearest(distances, start):
    return np.partition(_without_self(distances, start), 1, axis=1)[:, :2]


def twonn_dimension(F, *, working_memory=None):
    """Intrinsic dimension by TwoNN (Facco et al., 2017), maximum likelihood.

    For each sample, ``mu = r2 / r1`` is the ratio of the Euclidean distances
    to its second and first nearest neighbours. If the density is locally
    uniform on a ``d``-dimensional manifold, ``log mu`` is exponential with
    rate ``d``, so, over the ``N`` samples::

        d_hat = (N - 1) / sum_i log mu_i

    the maximum-likelihood estimate with the ``(N - 1)`` correction that makes
    it unbiased. Its standard deviation is ``d / sqrt(N - 2)`` under the
    model: about 0.045 for ``d = 2`` and ``N = 2000``.

    Parameters
    ----------
    F : array-like of shape (n_samples, n_features)
        Features, one row per sample; at least 3 rows.
    working_memory : float, default=None
        MiB per chunk of the distance matrix; ``None`` uses
        ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    dimension : float
        ``inf`` when every sample's two nearest neighbours are equally far
        (a regular lattice).

    See Also
    --------
    effective_rank : A linear (spectral) count of directions.

    Notes
    -----
    The paper fits a line to the empirical distribution of ``log mu`` after
    discarding the largest 10% of the ratios; this function uses the
    maximum-likelihood estimator instead (as in Denti et al., 2022), which
    needs no fraction to choose. Samples with an exact duplicate have
    ``r1 = 0`` and are left out (they still count as the other samples'
    neighbours). Time ``O(n_samples^2 n_features)``; memory
    one chunk of distances.

    References
    ----------
    .. [1] E. Facco, M. d'Errico, A. Rodriguez, A. Laio, "Estimating the
       intrinsic dimension of datasets by a minimal neighborhood information",
       Scientific Reports 7, 12140, 2017.
    .. [2] F. Denti, D. Doimo, A. Laio, A. Mira, "The generalized ratios
       intrinsic dimension estimator", Scientific Reports 12, 20005, 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_layers.metrics import twonn_dimension
    >>> rng = np.random.default_rng(0)
    >>> plane = rng.normal(size=(1000, 2)) @ rng.normal(size=(2, 10))
    >>> round(twonn_dimension(plane), 1)
    2.0
    """
    F = check_features(F, min_samples=3)
    X = np.asarray(F, dtype=np.float64)
    # Duplicates are found by equality: the squared-distance formula below
    # gives two equal rows a distance near 1e-5, not 0, and log(r2 / r1) would
    # then drag the estimate towards zero.
    _, inverse, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
    unique = counts[inverse.ravel()] == 1
    X = X - X.mean(axis=0)  # fewer cancellations in the squared-distance formula
    nearest = np.concatenate(
        list(
            pairwise_distances_chunked(
                X, reduce_func=_two_nearest, working_memory=working_memory
            )
        )
    )
    r1, r2 = nearest[:, 0], nearest[:, 1]
    kept = unique & (r1 > 0)
    n_kept = int(kept.sum())
    if n_kept < 3:
        raise ValueError(
            f"TwoNN needs at least 3 samples without an exact duplicate; F has {n_kept}."
        )
    total = float(np.log(r2[kept] / r1[kept]).sum())
    return np.inf if total == 0 else (n_kept - 1) / total


def knn_loo_accuracy(F, y, *, n_neighbors=5, working_memory=None):
    """Leave-one-out accuracy of a cosine k-nearest-neighbour vote.

    Each sample is classified by the majority label of its ``n_neighbors``
    most cosine-similar other samples (ties go to the smallest label, as in
    :class:`~sklearn.neighbors.KNeighborsClassifier`); the result is the
    fraction classified correctly. It equals
    ``cross_val_score(KNeighborsClassifier(n_neighbors, metric="cosine"), F, y,
    cv=LeaveOneOut()).mean()`` without refitting ``n_samples`` times.

    Parameters
    ----------
    F : array-like of shape (n_samples, n_features)
        Features, one row per sample.
    y : array-like of shape (n_samples,)
        Class labels.
    n_neighbors : int, default=5
        Neighbours that vote; fewer than ``n_samples``.
    working_memory : float, default=None
        MiB per chunk of the similarity matrix; ``None`` uses
        ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    accuracy : float

    See Also
    --------
    sklearn.neighbors.KNeighborsClassifier : The same vote as an estimator.

    Notes
    -----
    An all-zero row has cosine distance 1 to everything, as in scikit-learn.
    Time ``O(n_samples^2 n_features)``; memory one chunk of similarities.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn_layers.metrics import knn_loo_accuracy
    >>> X, y = load_iris(return_X_y=True)
    >>> round(knn_loo_accuracy(X, y, n_neighbors=5), 3)
    0.967
    """
    F = check_features(F)
    _, codes = check_labels(F, y)
    n_neighbors = check_positive_int(n_neighbors, "n_neighbors")
    if n_neighbors >= len(F):
        raise ValueError(
            f"n_neighbors={n_neighbors} must be smaller than the number of samples "
            f"({len(F)}): each sample's own row does not vote."
        )
    n_classes = int(codes.max()) + 1

    def vote(distances, start):
        distances = _without_self(distances, start)
        neighbours = np.argpartition(distances, n_neighbors - 1, axis=1)[:, :n_neighbors]
        votes = np.zeros((len(distances), n_classes))
        np.add.at(votes, (np.arange(len(distances))[:, None], codes[neighbours]), 1.0)
        return votes.argmax(axis=1)

    predicted = np.concatenate(
        list(
            pairwise_distances_chunked(
                np.asarray(F, dtype=np.float64), metric="cosine", reduce_func=vote,
                working_memory=working_memory,
            )
        )
    )
    return float(np.mean(predicted == codes))
