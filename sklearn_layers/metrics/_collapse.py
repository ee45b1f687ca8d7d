"""Within-class variability collapse (NC1, Papyan et al., 2020)."""

import numpy as np
from sklearn.utils import gen_batches

from ..utils._chunks import chunk_n_rows
from ._validation import check_features, check_labels


def nc1(F, y, *, working_memory=None):
    """Within-class variability relative to the spread of the class means (NC1).

    With ``mu_c`` the mean of class ``c``, ``mu_G`` the mean of all samples,
    ``N`` samples and ``C`` classes::

        Sigma_W = 1/N sum_i (h_i - mu_{c(i)}) (h_i - mu_{c(i)})^T
        Sigma_B = 1/C sum_c (mu_c - mu_G) (mu_c - mu_G)^T
        NC1     = 1/C trace(Sigma_W Sigma_B^+)

    (``^+`` the Moore-Penrose pseudo-inverse), the measure of Papyan, Han and
    Donoho. It is 0 when every sample sits on its class mean ("collapsed")
    and grows as the classes spread relative to their separation. It only
    sees within-class variation along the directions the class means span.

    Parameters
    ----------
    F : array-like of shape (n_samples, n_features)
        Features, one row per sample.
    y : array-like of shape (n_samples,)
        Class labels; at least two classes.
    working_memory : float, default=None
        MiB per chunk of rows; ``None`` uses
        ``sklearn.get_config()["working_memory"]``.

    Returns
    -------
    nc1 : float
        ``inf`` when all class means coincide but the classes have spread.

    Notes
    -----
    ``Sigma_B`` is never formed: with ``Sigma_B = sum_k lambda_k v_k v_k^T``
    (from the SVD of the centred class means),
    ``trace(Sigma_W Sigma_B^+) = sum_k v_k^T Sigma_W v_k / lambda_k``, and the
    ``v_k^T Sigma_W v_k`` are sums of squared projections of the centred rows,
    accumulated in chunks. Eigenvalues below ``lambda_max * n_features * eps``
    are treated as zero, as :func:`numpy.linalg.pinv` does.

    References
    ----------
    .. [1] V. Papyan, X. Y. Han, D. L. Donoho, "Prevalence of neural collapse
       during the terminal phase of deep learning training", PNAS 117(40),
       2020.
    .. [2] T. Galanti, A. Gyorgy, M. Hutter, "On the role of neural collapse in
       transfer learning", ICLR 2022.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_layers.metrics import nc1
    >>> F = np.array([[-1.5], [-0.5], [0.5], [1.5]])  # class means -1 and 1
    >>> nc1(F, [0, 0, 1, 1])  # Sigma_W = 0.25, Sigma_B = 1: 0.25 / 2
    0.125
    >>> nc1(np.array([[-1.0], [-1.0], [1.0], [1.0]]), [0, 0, 1, 1])
    0.0
    """
    F = check_features(F)
    classes, codes = check_labels(F, y)
    if len(classes) < 2:
        raise ValueError(f"NC1 needs at least two classes; y has {len(classes)}.")
    n, d = F.shape
    n_classes = len(classes)
    counts = np.bincount(codes, minlength=n_classes)
    means = np.zeros((n_classes, d))
    for rows in gen_batches(n, chunk_n_rows(8 * d, working_memory, max_rows=n)):
        np.add.at(means, codes[rows], np.asarray(F[rows], dtype=np.float64))
    global_mean = means.sum(axis=0) / n
    means /= counts[:, None]
    _, singular, directions = np.linalg.svd(
        (means - global_mean) / np.sqrt(n_classes), full_matrices=False
    )
    between = singular**2  # the non-zero eigenvalues of Sigma_B live here
    kept = between > between.max() * d * np.finfo(np.float64).eps
    directions = directions[kept]
    within = np.zeros(len(directions))
    spread = 0.0
    for rows in gen_batches(n, chunk_n_rows(8 * d, working_memory, max_rows=n)):
        centred = np.asarray(F[rows], dtype=np.float64) - means[codes[rows]]
        within += ((centred @ directions.T) ** 2).sum(axis=0)
        spread += float((centred**2).sum())
    if not kept.any():
        return np.inf if spread > 0 else np.nan
    return float((within / n / between[kept]).sum() / n_classes)
