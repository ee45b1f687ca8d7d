"""Heads: scikit-learn estimators for any 2-D numeric X (layer features or tabular data)."""
