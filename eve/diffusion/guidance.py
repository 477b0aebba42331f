"""Classifier-free guidance combinations. Pure functions; they act on x0 or eps predictions alike, since both are
affine in the network output at a fixed x_t with weights that sum to one."""

from __future__ import annotations

from torch import Tensor


def cfg(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """Single-condition guidance: uncond + scale (cond - uncond); scale 1 returns cond."""
    return uncond + scale * (cond - uncond)


def dual_cfg(uncond: Tensor, image_only: Tensor, full: Tensor, text_scale: float, image_scale: float) -> Tensor:
    """InstructPix2Pix guidance (Brooks et al. 2023, Eq. 3) with a text and an input-image scale.

    uncond: no image, no text; image_only: image, no text; full: image and text.
    """
    return uncond + image_scale * (image_only - uncond) + text_scale * (full - image_only)
