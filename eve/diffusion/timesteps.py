"""Timestep selection: the student's K-bin steps (FDD §3.3), fixed evenly spaced steps, DDIM inference grids.

All functions return integer timesteps in [0, T) as a 1-D LongTensor, highest noise first.
"""

from __future__ import annotations

import torch
from torch import Tensor


def kbin_edges(k: int, num_train_timesteps: int) -> list[tuple[int, int]]:
    """The k equal bins of {0, ..., T-1}, high noise first: bin j is [lo_j, hi_j) (FDD §3.3)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    T = num_train_timesteps
    if k > T:
        raise ValueError(f"k={k} bins do not fit in T={T} timesteps")
    bounds = [round(T * i / k) for i in range(k + 1)]  # ascending edges 0 .. T
    return [(bounds[k - j - 1], bounds[k - j]) for j in range(k)]


def kbin_timesteps(
    k: int, num_train_timesteps: int, *, generator: torch.Generator | None = None, pin_first: bool = True
) -> Tensor:
    """One uniform draw inside each of the k equal bins, descending (FDD §3.3, "K-bin sampling").

    Args:
        k: number of student steps (= number of bins).
        num_train_timesteps: T.
        generator: torch generator, for reproducible draws.
        pin_first: the student's chain starts from pure noise, so by default its first step is labelled T-1
            (the top of bin 1) instead of a random step of bin 1 (open question OQ-3 in paper-notes §5:
            a random label in [2T/3, T) for a pure-noise input is off-distribution). False draws it too.
    """
    steps = []
    for j, (lo, hi) in enumerate(kbin_edges(k, num_train_timesteps)):
        if j == 0 and pin_first:
            steps.append(num_train_timesteps - 1)
        else:
            steps.append(int(torch.randint(lo, hi, (1,), generator=generator)))
    return torch.tensor(steps, dtype=torch.long)


def evenly_spaced_timesteps(k: int, num_train_timesteps: int) -> Tensor:
    """The fixed k steps of the "w/o K-bin" ablation: the top of each bin, i.e. T-1, T-1-T/k, ..."""
    return torch.tensor([hi - 1 for _, hi in kbin_edges(k, num_train_timesteps)], dtype=torch.long)


def ddim_timesteps(num_steps: int, num_train_timesteps: int, spacing: str = "trailing", steps_offset: int = 0) -> Tensor:
    """Inference timesteps of a `num_steps`-step DDIM run, descending (diffusers' `timestep_spacing` semantics).

    "trailing" starts at T-1 (pure noise under zero-terminal SNR; Lin et al. 2024 §3.3), "leading" is SD-1.5's
    original spacing (plus `steps_offset`), "linspace" rounds an even grid over [0, T-1].
    """
    T = num_train_timesteps
    if not 1 <= num_steps <= T:
        raise ValueError(f"num_steps must be in [1, {T}], got {num_steps}")
    if spacing == "trailing":
        ts = torch.arange(T, 0, -T / num_steps, dtype=torch.float64).round() - 1
    elif spacing == "leading":
        ts = torch.arange(0, num_steps, dtype=torch.float64).mul(T // num_steps).round().flip(0) + steps_offset
    elif spacing == "linspace":
        ts = torch.linspace(0, T - 1, num_steps, dtype=torch.float64).round().flip(0)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r} (trailing, leading, linspace)")
    return ts.clamp(0, T - 1).long()
