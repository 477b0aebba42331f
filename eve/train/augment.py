"""Differentiable augmentation for the discriminators (DiffAugment, Zhao et al. 2020: colour, translation,
cutout; paper-notes OQ-19), with one set of random parameters per group: an (output, input) pair for D_e, all
frames of a clip for D_v, so augmentation never breaks the alignment or the motion being judged.

Each part is configurable (disc.augment_colour, disc.translate_fraction, disc.cutout_fraction): colour jitter can
undo a colour edit and a cutout can hide the edited object, and a D that cannot see the edit cannot judge it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Augment:
    """Which DiffAugment parts run, and how strong. The defaults are DiffAugment's "color,translation,cutout"."""

    colour: bool = True  # brightness, saturation, contrast
    translate: float = 0.125  # largest shift as a fraction of each side (whole pixels, zero padding)
    cutout: float = 0.25  # area fraction of the zeroed rectangle; 0 = none

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return diff_augment(x, generator, colour=self.colour, translate=self.translate, cutout=self.cutout)


def diff_augment(x: Tensor, generator: torch.Generator | None = None, *, colour: bool = True, translate: float = 0.125,
                 cutout: float = 0.25) -> Tensor:
    """x: [N, G, 3, H, W] in [-1, 1]; the G images of a group share every random parameter."""
    N, G, C, H, W = x.shape
    r = lambda *s: torch.rand(*s, generator=generator).to(x.device, x.dtype)  # noqa: E731
    if colour:
        x = x + (r(N, 1, 1, 1, 1) - 0.5)  # brightness
        mean_c = x.mean(dim=2, keepdim=True)
        x = (x - mean_c) * (r(N, 1, 1, 1, 1) * 2) + mean_c  # saturation
        mean_all = x.mean(dim=(2, 3, 4), keepdim=True)
        x = (x - mean_all) * (r(N, 1, 1, 1, 1) + 0.5) + mean_all  # contrast
    if translate > 0:
        x = _translate(x, r(N, 2) * 2 - 1, translate)
    if cutout > 0:
        x = _cutout(x, r(N), r(N), cutout)
    return x


def _translate(x: Tensor, u: Tensor, fraction: float) -> Tensor:
    """Shift each group by round(u * fraction * side) whole pixels (u: [N, 2] in [-1, 1], x then y), zero padding.
    Whole pixels, as DiffAugment does: a sub-pixel shift would blur every image (bilinear resampling) and so change
    its colours and fine detail, which is what the discriminator judges."""
    N, G, C, H, W = x.shape
    size = torch.tensor([W, H], device=x.device, dtype=x.dtype)
    pixels = torch.round(u * fraction * size)
    theta = torch.zeros(N, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = -pixels * 2 / size  # output pixel p reads input p - shift (normalised grid: 2 / side per pixel)
    grid = F.affine_grid(theta, (N, C, H, W), align_corners=False).repeat_interleave(G, 0)
    # "nearest" at exact pixel centres copies pixels; it still passes gradient to the pixels it reads.
    out = F.grid_sample(x.flatten(0, 1), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out.unflatten(0, (N, G))


def _cutout(x: Tensor, uy: Tensor, ux: Tensor, fraction: float) -> Tensor:
    """Zero a rectangle covering `fraction` of each image (sides round(sqrt(fraction) * side)), placed wholly inside
    the image at a uniform offset (uy, ux: [N] in [0, 1)), so every group loses the same area."""
    N, G, C, H, W = x.shape
    h, w = round(math.sqrt(fraction) * H), round(math.sqrt(fraction) * W)
    top = (uy * (H - h + 1)).long().clamp(max=H - h)
    left = (ux * (W - w + 1)).long().clamp(max=W - w)
    ys = torch.arange(H, device=x.device).view(1, H, 1)
    xs = torch.arange(W, device=x.device).view(1, 1, W)
    top, left = top.view(N, 1, 1), left.view(N, 1, 1)
    inside = (ys >= top) & (ys < top + h) & (xs >= left) & (xs < left + w)
    return x * (~inside).to(x.dtype).view(N, 1, 1, H, W)
