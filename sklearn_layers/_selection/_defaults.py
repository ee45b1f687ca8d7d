"""Placeholder until the heads sub-package owns ``default_probe``."""

from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def default_probe():
    """The default linear probe: ``StandardScaler`` then ``LogisticRegression``.

    Returns
    -------
    probe : Pipeline
    """
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
