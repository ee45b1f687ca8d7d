"""Internal utilities of sklearn_layers."""
