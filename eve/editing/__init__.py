"""Editing videos with the composed model: sliding windows (pure) and the Editor."""

from eve.editing.pipeline import Editor
from eve.editing.windows import Window, window_slices

__all__ = ["Editor", "Window", "window_slices"]
