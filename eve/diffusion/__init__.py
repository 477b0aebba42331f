"""Diffusion math: noise schedule, timestep selection, DDIM sampling, guidance. Torch only, no diffusers, no I/O."""

from eve.diffusion.guidance import cfg, dual_cfg
from eve.diffusion.sampling import Denoiser, ddim_step, sample
from eve.diffusion.schedule import NoiseSchedule
from eve.diffusion.timesteps import ddim_timesteps, evenly_spaced_timesteps, kbin_timesteps

__all__ = [
    "Denoiser",
    "NoiseSchedule",
    "cfg",
    "ddim_step",
    "ddim_timesteps",
    "dual_cfg",
    "evenly_spaced_timesteps",
    "kbin_timesteps",
    "sample",
]
