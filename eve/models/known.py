"""How already-edited frames (the edited first frame, or a previous window's frames) condition the video adapter.

The paper conditions Emu Video's temporal layers on the first frame, which it edits with the edit adapter (§4).
AnimateDiff motion modules have no image input, so eve offers two mechanisms (config `model.first_frame`):

* "replace" (default): the known frames' slots of x_t are replaced by the known latents noised to level t with a
  fixed noise, and the model's prediction for those slots is replaced by the exact one. Temporal attention then
  propagates the known content to the other frames. It needs no extra weights, works with any motion adapter
  (including one trained without image conditioning, as in the shapes world) and any number of known frames,
  which the sliding windows use. This is the "replacement" conditioning of Ho et al. 2022 (Video Diffusion Models
  §3.1); its known weakness, that the other frames see the known ones only through attention at the same noise
  level, is what FDD's alignment then trains around.
* "sparsectrl": SparseCtrl-RGB (Guo et al. 2023) residuals from a SparseControlNetModel that sees the clean known
  latents and a frame mask; needs those weights (e.g. guoyww/animatediff-sparsectrl-rgb, made for AnimateDiff v3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from eve.diffusion.schedule import NoiseSchedule

MECHANISMS = ("replace", "sparsectrl")


@dataclass
class Known:
    """latents: [B, F, C, h, w] clean latents (values at unknown frames are ignored); mask: [F] bool, True where
    known; noise: [B, F, C, h, w] the fixed noise that puts known frames at level t ("replace" only)."""

    latents: Tensor
    mask: Tensor
    noise: Tensor

    def frames(self, index: slice | list[int]) -> Known:
        return Known(self.latents[:, index], self.mask[index], self.noise[:, index])

    def _mask(self, like: Tensor) -> Tensor:
        return self.mask.to(like.device).view(1, -1, 1, 1, 1)


def first_frame(latent: Tensor, num_frames: int, noise: Tensor) -> Known:
    """Known frames = frame 0 only. latent: [B, C, h, w]; noise: [B, num_frames, C, h, w]."""
    B = latent.shape[0]
    latents = torch.zeros(B, num_frames, *latent.shape[1:], dtype=latent.dtype, device=latent.device)
    latents[:, 0] = latent
    mask = torch.zeros(num_frames, dtype=torch.bool)
    mask[0] = True
    return Known(latents, mask, noise)


def replace_input(xt: Tensor, t: Tensor, known: Known, schedule: NoiseSchedule) -> Tensor:
    """x_t with the known slots set to alpha_t * known + sigma_t * noise."""
    noised = schedule.add_noise(known.latents.to(xt), known.noise.to(xt), t)
    return torch.where(known._mask(xt), noised, xt)


def replace_output(out: Tensor, xt: Tensor, t: Tensor, known: Known, schedule: NoiseSchedule) -> Tensor:
    """The raw output with the known slots set to predict x0 = known latents *at the caller's x_t* (not the
    replaced one), so that every conversion the caller makes (x0, eps) sees exactly the known frames; an SDS
    caller whose x_t already holds them noised gets eps_hat = eps there, i.e. no gradient."""
    x0 = known.latents.to(out)
    exact = schedule.output_from(x0, schedule.eps_from_x0(xt.to(out), x0, t), t)
    return torch.where(known._mask(out), exact, out)


def sparsectrl_residuals(
    sparsectrl: nn.Module, x: Tensor, t: Tensor, caption_bf: Tensor, known: Known, scale: float
) -> tuple[list[Tensor], Tensor]:
    """SparseCtrl residuals for x [B, F, C, h, w]: condition = known latents where the mask is set, zeros elsewhere."""
    B, F, C, h, w = x.shape
    m = known._mask(x).to(x.dtype)
    cond = (known.latents.to(x) * m).permute(0, 2, 1, 3, 4)  # [B, C, F, h, w]
    mask = m.expand(B, F, 1, h, w).permute(0, 2, 1, 3, 4)  # [B, 1, F, h, w]
    return sparsectrl(
        x.permute(0, 2, 1, 3, 4),
        t,
        encoder_hidden_states=caption_bf,
        controlnet_cond=cond,
        conditioning_mask=mask,
        conditioning_scale=scale,
        return_dict=False,
    )
