"""Deterministic DDIM (eta = 0) over any denoiser callable that predicts x0.

A denoiser maps (x_t, t) to an x0 prediction of the same shape; eps is recovered from the schedule, so the same
loop serves the student's k steps, the teachers' many steps, and tests with an oracle that returns the true x0.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from eve.diffusion.schedule import NoiseSchedule


class Denoiser(Protocol):
    def __call__(self, xt: Tensor, t: Tensor) -> Tensor:
        """x0 prediction for x_t [B, ...] at integer timesteps t [B]."""
        ...


def ddim_step(schedule: NoiseSchedule, xt: Tensor, x0: Tensor, t: Tensor, s: Tensor | None) -> Tensor:
    """Jump from t to s < t: x_s = alpha_s x0 + sigma_s eps(x_t, x0). s=None means the end of the chain (x0)."""
    if s is None:
        return x0
    eps = schedule.eps_from_x0(xt, x0, t)
    return schedule.add_noise(x0, eps, s)


def sample(
    denoiser: Denoiser,
    x: Tensor,
    timesteps: Sequence[int] | Tensor,
    schedule: NoiseSchedule,
    *,
    progress: bool = False,
    callback: Callable[[int, Tensor, Tensor], None] | None = None,
) -> Tensor:
    """Run DDIM from x (the noisy sample at timesteps[0]) through all timesteps; returns the final x0 prediction.

    Gradients flow through every denoiser call unless the caller disables them (the FDD student needs them).
    `callback(i, t, x0)` sees each step's x0 prediction.
    """
    ts = [int(t) for t in timesteps]
    if any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"timesteps must be strictly descending, got {ts}")
    B = x.shape[0]
    for i in tqdm(range(len(ts)), disable=not progress, desc="denoise", leave=False):
        t = torch.full((B,), ts[i], dtype=torch.long, device=x.device)
        x0 = denoiser(x, t)
        if callback is not None:
            callback(i, t, x0)
        s = torch.full_like(t, ts[i + 1]) if i + 1 < len(ts) else None
        x = ddim_step(schedule, x, x0, t, s)
    return x
