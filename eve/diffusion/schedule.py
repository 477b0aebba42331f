"""The backbone's discrete noise schedule and the conversions between its parameterisations.

Forward process (paper-notes §1.2): x_t = alpha_t * x0 + sigma_t * eps, alpha_t = sqrt(abar_t),
sigma_t = sqrt(1 - abar_t), t in {0, ..., T-1}. Built from a tensor or from the four numbers a diffusers
scheduler config holds, never from a diffusers object, so this module stays torch-only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def betas_for(beta_schedule: str, beta_start: float, beta_end: float, num_train_timesteps: int) -> Tensor:
    """Betas of the named schedule, in float64 (diffusers' `linear`, `scaled_linear` and `squaredcos_cap_v2`)."""
    T = num_train_timesteps
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    if beta_schedule == "scaled_linear":  # Stable Diffusion's schedule
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=torch.float64) ** 2
    if beta_schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal cosine schedule
        f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        return torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float64)
    raise ValueError(f"unknown beta_schedule {beta_schedule!r} (linear, scaled_linear, squaredcos_cap_v2)")


def rescale_zero_terminal_snr(alphas_cumprod: Tensor) -> Tensor:
    """Shift and scale sqrt(abar) so that abar_{T-1} = 0 and abar_0 is unchanged (Lin et al. 2024, Alg. 1)."""
    s = alphas_cumprod.sqrt()
    s0, sT = s[0].clone(), s[-1].clone()
    s = (s - sT) * s0 / (s0 - sT)
    return s**2


class NoiseSchedule:
    """Discrete VP schedule with conversions between x0, eps and the network output.

    Args:
        alphas_cumprod: [T] cumulative products abar_t (diffusers' name).
        prediction_type: what the network outputs: "epsilon", "v_prediction" or "sample" (x0).
    """

    def __init__(self, alphas_cumprod: Tensor, prediction_type: str = "epsilon"):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"unknown prediction_type {prediction_type!r} (one of {PREDICTION_TYPES})")
        abar = alphas_cumprod.to(torch.float64)
        if prediction_type == "epsilon" and abar[-1] <= 0:
            # x0 = (x_t - sigma eps) / alpha is undefined at alpha = 0; zero-terminal SNR needs v or x0 output.
            raise ValueError("a zero-terminal-SNR schedule needs prediction_type v_prediction or sample, not epsilon")
        self.alphas_cumprod = abar.float()
        self.alpha = abar.sqrt().float()
        self.sigma = (1 - abar).sqrt().float()
        self.prediction_type = prediction_type

    @classmethod
    def from_config(
        cls,
        *,
        num_train_timesteps: int = 1000,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        beta_schedule: str = "scaled_linear",
        prediction_type: str = "epsilon",
        zero_terminal_snr: bool = False,
    ) -> NoiseSchedule:
        """Build from the fields of a diffusers `scheduler_config.json` (defaults are SD-1.5's)."""
        betas = betas_for(beta_schedule, beta_start, beta_end, num_train_timesteps)
        abar = torch.cumprod(1 - betas, dim=0)
        if zero_terminal_snr:
            abar = rescale_zero_terminal_snr(abar)
        return cls(abar, prediction_type)

    @property
    def num_train_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    def coefficients(self, t: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha_t, sigma_t) for integer timesteps `t` [B], shaped to broadcast against `like` [B, ...]."""
        t = torch.as_tensor(t, device=self.alpha.device).long().reshape(-1)
        shape = (-1,) + (1,) * (like.ndim - 1)
        a = self.alpha[t].reshape(shape).to(like.device, like.dtype)
        s = self.sigma[t].reshape(shape).to(like.device, like.dtype)
        return a, s

    def add_noise(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """x_t = alpha_t x0 + sigma_t eps."""
        a, s = self.coefficients(t, x0)
        return a * x0 + s * eps

    def x0_from_output(self, xt: Tensor, out: Tensor, t: Tensor) -> Tensor:
        """x0 implied by the network output `out` at x_t."""
        a, s = self.coefficients(t, xt)
        if self.prediction_type == "epsilon":
            return (xt - s * out) / a
        if self.prediction_type == "v_prediction":
            return a * xt - s * out
        return out

    def eps_from_x0(self, xt: Tensor, x0: Tensor, t: Tensor) -> Tensor:
        """eps implied by x0 at x_t. sigma_t > 0 for every t of a discrete schedule, so this is always defined."""
        a, s = self.coefficients(t, xt)
        return (xt - a * x0) / s

    def output_from(self, x0: Tensor, eps: Tensor, t: Tensor) -> Tensor:
        """The network output that corresponds to (x0, eps): the regression target when training."""
        if self.prediction_type == "epsilon":
            return eps
        a, s = self.coefficients(t, x0)
        if self.prediction_type == "v_prediction":
            return a * eps - s * x0
        return x0

    def snr(self, t: Tensor) -> Tensor:
        """alpha_t^2 / sigma_t^2."""
        t = torch.as_tensor(t).long()
        return self.alpha[t] ** 2 / self.sigma[t] ** 2
