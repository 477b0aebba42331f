"""Pixels <-> the backbone's sample space for videos [B, F, C, H, W].

VaeCodec wraps a diffusers AutoencoderKL (latents scaled by its `scaling_factor`); IdentityCodec serves pixel-space
backbones (the tiny set and the shapes world). Pixels are float in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class IdentityCodec(nn.Module):
    """The backbone works on pixels directly."""

    scale_factor = 1

    def __init__(self, channels: int = 3):
        super().__init__()
        self.channels = channels

    def encode(self, video: Tensor) -> Tensor:
        return video

    def decode(self, latents: Tensor) -> Tensor:
        return latents


class VaeCodec(nn.Module):
    """AutoencoderKL applied frame by frame in chunks (to bound memory); gradients flow through decode."""

    def __init__(self, vae: nn.Module, chunk: int = 16):
        super().__init__()
        self.vae = vae
        self.chunk = chunk
        self.scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.channels = vae.config.latent_channels
        self.scaling = vae.config.scaling_factor
        self.shift = getattr(vae.config, "shift_factor", None) or 0.0

    def encode(self, video: Tensor) -> Tensor:
        B, F = video.shape[:2]
        frames = video.flatten(0, 1).to(self.vae.dtype)
        z = torch.cat([self.vae.encode(c).latent_dist.mean for c in frames.split(self.chunk)])
        z = (z - self.shift) * self.scaling
        return z.unflatten(0, (B, F))

    def decode(self, latents: Tensor) -> Tensor:
        B, F = latents.shape[:2]
        z = latents.flatten(0, 1).to(self.vae.dtype) / self.scaling + self.shift
        x = torch.cat([self.vae.decode(c).sample for c in z.split(self.chunk)])
        return x.unflatten(0, (B, F))
