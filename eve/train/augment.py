"""Differentiable augmentation for the discriminators (DiffAugment, Zhao et al. 2020: colour, translation,
cutout; paper-notes OQ-19), with one set of random parameters per group: an (output, input) pair for D_e, all
frames of a clip for D_v, so augmentation never breaks the alignment or the motion being judged."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def diff_augment(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x: [N, G, 3, H, W] in [-1, 1]; the G images of a group share every random parameter."""
    N, G, C, H, W = x.shape
    r = lambda *s: torch.rand(*s, generator=generator).to(x.device, x.dtype)  # noqa: E731
    # colour: brightness, saturation, contrast
    x = x + (r(N, 1, 1, 1, 1) - 0.5)
    mean_c = x.mean(dim=2, keepdim=True)
    x = (x - mean_c) * (r(N, 1, 1, 1, 1) * 2) + mean_c
    mean_all = x.mean(dim=(2, 3, 4), keepdim=True)
    x = (x - mean_all) * (r(N, 1, 1, 1, 1) + 0.5) + mean_all
    # translation by up to 1/8 of the size, zero padding
    shift = (r(N, 2) * 2 - 1) * 0.125 * 2  # in normalised [-1, 1] grid units
    theta = torch.zeros(N, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, (N, C, H, W), align_corners=False).repeat_interleave(G, 0)
    x = F.grid_sample(x.flatten(0, 1), grid, padding_mode="zeros", align_corners=False).unflatten(0, (N, G))
    # cutout of half the size
    cy, cx = (r(N) * H).long(), (r(N) * W).long()
    ys = torch.arange(H, device=x.device).view(1, H, 1)
    xs = torch.arange(W, device=x.device).view(1, 1, W)
    inside = ((ys - cy.view(N, 1, 1)).abs() < H // 4) & ((xs - cx.view(N, 1, 1)).abs() < W // 4)
    return x * (~inside).to(x.dtype).view(N, 1, 1, H, W)
