"""Utilities of sklearn_layers.

:mod:`sklearn_layers.utils.toy` is public: small networks for examples, tests
and the documentation. Every module whose name starts with an underscore is
internal and may change without notice.
"""
