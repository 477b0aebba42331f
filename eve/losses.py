"""FDD's losses as pure functions over tensors (paper §3.2; paper-notes §1.4). No model imports.

SDS is written as a surrogate whose gradient with respect to the student output x0 is exactly c(t)(eps_hat - eps):
0.5 * mean((x0 - sg(x0 - g))^2) has d/dx0 = g / numel, i.e. the per-element mean reduction of paper-notes OQ-7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SDS_WEIGHTINGS = ("sds", "uniform", "add_exponential")


def sds_weight(alpha: Tensor, sigma: Tensor, weighting: str) -> Tensor:
    """c(t) in eps space (paper-notes OQ-4): "sds" = sigma_t^2 (DreamFusion), "uniform" = 1,
    "add_exponential" = 2 sigma_t (ADD's c(t) = alpha_t in x0 space, rewritten in eps space)."""
    if weighting == "sds":
        return sigma**2
    if weighting == "uniform":
        return torch.ones_like(sigma)
    if weighting == "add_exponential":
        return 2 * sigma
    raise ValueError(f"unknown SDS weighting {weighting!r} ({', '.join(SDS_WEIGHTINGS)})")


def sds_loss(x0: Tensor, eps_hat: Tensor, eps: Tensor, weight: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Score distillation surrogate and its gradient signal.

    Args:
        x0: student output [B, ...] (with grad).
        eps_hat: the frozen teacher's noise prediction at x_t = alpha_t sg(x0) + sigma_t eps (no grad).
        eps: the noise used, same shape.
        weight: c(t), broadcastable to x0.
        mask: optional, broadcastable; 0 where no gradient should flow (e.g. known frames).
    Returns:
        (loss, g) with g = c(t) (eps_hat - eps) (masked); d loss / d x0 = g / x0.numel().
    """
    g = (weight * (eps_hat - eps)).detach()
    if mask is not None:
        g = g * mask
    return sds_surrogate(x0, g), g


def sds_surrogate(x0: Tensor, g: Tensor) -> Tensor:
    """0.5 * mean((x0 - sg(x0 - g))^2): a loss whose gradient with respect to x0 is g / x0.numel()."""
    target = (x0 - g).detach()
    return 0.5 * F.mse_loss(x0, target, reduction="mean")


def rms_matched_noise(g: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian noise with the RMS of g over the elements the mask keeps, zero where it does not: the stand-in for
    an SDS gradient in the control run that asks whether SDS carries signal at all (fdd.sds_noise_control)."""
    keep = torch.ones_like(g) if mask is None else mask.to(g).expand_as(g)
    target = g.detach().pow(2).sum().div(keep.sum().clamp(min=1)).sqrt()
    n = torch.randn(g.shape, generator=generator).to(g) * keep
    actual = n.pow(2).sum().div(keep.sum().clamp(min=1)).sqrt()
    return n * (target / actual.clamp(min=torch.finfo(g.dtype).tiny))


def hinge_d_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Discriminator hinge loss (Lim & Ye 2017; paper L_D): E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))]."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_g_loss(fake_logits: Tensor, form: str = "paper_clipped") -> Tensor:
    """Generator adversarial loss. "paper_clipped": -E[max(0, 1 + D(fake))], as printed in the paper (no gradient
    once D(fake) < -1, i.e. exactly where D is sure a sample is fake); "add_linear": -E[D(fake)], ADD's form,
    gradient -1/N for every logit (paper-notes OQ-20). Equal while D(fake) > -1. Which trains better is open:
    measure both."""
    if form == "paper_clipped":
        return -F.relu(1 + fake_logits).mean()
    if form == "add_linear":
        return -fake_logits.mean()
    raise ValueError(f"unknown generator loss form {form!r} (paper_clipped, add_linear)")


def r1_penalty(logits: Tensor, inputs: list[Tensor]) -> Tensor:
    """sum_k ||d sum(logits) / d inputs_k||^2 averaged over the batch (R1, Mescheder et al. 2018), on real samples;
    the caller scales by gamma / 2."""
    grads = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return sum(g.pow(2).flatten(1).sum(1).mean() for g in grads)
