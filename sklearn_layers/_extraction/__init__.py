"""Network-side machinery: layer resolution, inputs, capture, pooling, cache."""
