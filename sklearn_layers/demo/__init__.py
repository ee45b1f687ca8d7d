"""The embedded default job: ``python -m sklearn_layers demo``."""
