"""Spectral measures of a feature matrix: effective rank and matrix entropy."""

import numpy as np
from sklearn.utils import gen_batches

from ..utils._chunks import chunk_n_rows
from ._validation import check_features


def gram_spectrum(F, *, working_memory=None):
    """The squared singular values of ``F``, largest first, in float64.

    They are the eigenvalues of the smaller Gram matrix, ``F F^T`` (n x n) or
    ``F^T F`` (d x d), accumulated in float64 over blocks of ``F`` so that
    only that matrix and one block are in memory. Eigenvalues below
    ``lambda_max * m * eps`` (``m`` the Gram matrix's size) are below the
    precision of this route and are returned as 0.

    Parameters
    ----------
    F : ndarray of shape (n_samples, n_features)
    working_memory : float, default=None
        MiB per block; ``None`` uses ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    eigenvalues : ndarray of shape (min(n_samples, n_features),)
    """
    n, d = F.shape
    if n <= d:
        gram = np.zeros((n, n))
        for cols in gen_batches(d, chunk_n_rows(8 * n, working_memory, max_rows=d)):
            block = np.asarray(F[:, cols], dtype=np.float64)
            gram += block @ block.T
    else:
        gram = np.zeros((d, d))
        for rows in gen_batches(n, chunk_n_rows(8 * d, working_memory, max_rows=n)):
            block = np.asarray(F[rows], dtype=np.float64)
            gram += block.T @ block
    eigenvalues = np.linalg.eigvalsh(gram)[::-1]
    floor = eigenvalues[0] * len(eigenvalues) * np.finfo(np.float64).eps
    return np.where(eigenvalues > floor, eigenvalues, 0.0)


def _shannon(weights):
    p = weights[weights > 0] / weights.sum()
    return max(0.0, float(-(p * np.log(p)).sum()))  # never -0.0


def effective_rank(F, *, working_memory=None):
    """RankMe: the effective rank of a feature matrix (Garrido et al., 2023).

    With ``sigma_1 >= sigma_2 >= ...`` the singular values of ``F`` (rows are
    samples; ``F`` is not centred) and ``p_k = sigma_k / sum_j sigma_j``::

        RankMe(F) = exp(-sum_k p_k log p_k)

    It lies between 1 (rank one) and ``min(n_samples, n_features)`` (all
    singular values equal): the number of directions the samples really
    spread over. It is unchanged by rotating the features or the samples and
    by scaling ``F``.

    Parameters
    ----------
    F : array-like of shape (n_samples, n_features)
        Features, one row per sample.
    working_memory : float, default=None
        MiB per block of the Gram matrix computation (see :func:`matrix_entropy`
        Notes); ``None`` uses ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    rank : float
        0 for an all-zero ``F``.

    See Also
    --------
    matrix_entropy : The entropy of the squared singular values.

    Notes
    -----
    The singular values are the square roots of the eigenvalues of the
    smaller Gram matrix, computed in float64; singular values below
    ``sigma_max * sqrt(m * eps)`` (``m = min(n_samples, n_features)``) are
    below that route's precision and count as zero. The paper adds
    ``epsilon = 1e-7`` to each ``p_k``; here zero terms are simply left out.

    References
    ----------
    .. [1] Q. Garrido, R. Balestriero, L. Najman, Y. LeCun, "RankMe: Assessing
       the downstream performance of pretrained self-supervised representations
       by their rank", ICML 2023.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_layers.metrics import effective_rank
    >>> round(effective_rank(np.eye(5)), 6)
    5.0
    >>> round(effective_rank(np.outer(np.arange(1, 5), np.ones(3))), 6)
    1.0
    """
    F = check_features(F)
    spectrum = gram_spectrum(F, working_memory=working_memory)
    if not spectrum.any():
        return 0.0
    return float(np.exp(_shannon(np.sqrt(spectrum))))


def matrix_entropy(F, *, normalize=True, working_memory=None):
    """Matrix-based entropy of the trace-normalised Gram matrix (alpha = 1).

    With ``K = F F^T`` the Gram matrix of the rows of ``F`` (not centred) and
    ``lambda_i`` its eigenvalues, ``p_i = lambda_i / trace(K)``::

        S(F) = -sum_i p_i log p_i

    the von Neumann entropy of ``K / trace(K)``: the alpha -> 1 limit of the
    matrix-based Renyi entropy ``1 / (1 - alpha) log sum_i p_i ** alpha`` used
    by Skean et al. The ``lambda_i`` are the squared singular values of ``F``,
    so ``S`` is the Shannon entropy of the share of variance (about the
    origin) each direction carries. With ``normalize=True`` it is divided by
    its maximum ``log(min(n_samples, n_features))``, as in the authors' code
    (their "maxEntropy" normalisation), and lies in [0, 1].

    Parameters
    ----------
    F : array-like of shape (n_samples, n_features)
        Features, one row per sample.
    normalize : bool, default=True
        Divide by ``log(min(n_samples, n_features))``.
    working_memory : float, default=None
        MiB per block of the Gram matrix computation; ``None`` uses
        ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    entropy : float
        0 for a rank-one (or all-zero) ``F``; unchanged by scaling ``F`` and by
        rotating its features or samples.

    See Also
    --------
    effective_rank : The exponential of the entropy of the singular values.

    Notes
    -----
    The papers compute it two ways: over the token vectors of one input (the
    "prompt entropy", averaged over inputs) and over one pooled vector per
    input (the "dataset entropy"). Given pooled features, as
    :func:`layer_metrics` passes them, this is the dataset entropy; pass one
    input's token matrix to get its prompt entropy.

    References
    ----------
    .. [1] O. Skean, M. R. Arefin, D. Zhao, N. Patel, J. Naghiyev, Y. LeCun,
       R. Shwartz-Ziv, "Layer by Layer: Uncovering Hidden Representations in
       Language Models", ICML 2025.
    .. [2] L. G. Sanchez Giraldo, M. Rao, J. C. Principe, "Measures of entropy
       from data using infinitely divisible kernels", IEEE Trans. Inf. Theory,
       2015.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_layers.metrics import matrix_entropy
    >>> round(matrix_entropy(np.eye(4)), 6)
    1.0
    >>> round(matrix_entropy(np.eye(4), normalize=False), 6)  # log(4)
    1.386294
    >>> matrix_entropy(np.outer(np.arange(1, 5), np.ones(3)))
    0.0
    """
    F = check_features(F)
    spectrum = gram_spectrum(F, working_memory=working_memory)
    if not spectrum.any() or min(F.shape) == 1:
        return 0.0
    entropy = _shannon(spectrum)
    return float(entropy / np.log(min(F.shape))) if normalize else entropy
