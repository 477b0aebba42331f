"""Procedural worlds where the whole mission runs for real and every edit has a ground truth."""
