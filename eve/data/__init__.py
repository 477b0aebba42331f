"""Everything before the model: video I/O (and, later, manifests and data preparation)."""
