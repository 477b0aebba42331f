"""Editing videos with the composed model: sliding windows (pure) and the diffusers pipeline."""

from eve.editing.pipeline import EveVideoEditPipeline, EveVideoEditPipelineOutput
from eve.editing.windows import Window, window_slices

__all__ = ["EveVideoEditPipeline", "EveVideoEditPipelineOutput", "Window", "window_slices"]
