"""The shapes world: 32x32 clips of coloured, patterned shapes moving over a background, seven edit tasks with
ground truth, teachers trained from scratch on CPU, and an evaluation against the ground truth."""
