"""The shapes world: 16x16 clips of coloured shapes moving over a background, seven edit tasks with ground truth,
teachers trained from scratch on CPU, and an evaluation against the ground truth."""
