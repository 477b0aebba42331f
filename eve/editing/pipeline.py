"""The Editor: edit a clip of any length and aspect ratio with a text instruction (paper §4, "Training Details").

1. Resize to the working size (eve.data.video.fit_size: aspect ratio kept, short side = model.resolution, sides
   rounded to the model's size multiple; no cropping) and back to the source size at the end.
2. Edit frame 0 with the edit teacher (many DDIM steps, ip2p-style text and image guidance).
3. Edit the clip with the student over sliding windows of the video adapter's frame count; each window is
   conditioned on the frames already edited (frame 0 for the first, the overlap for the others).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from tqdm.auto import tqdm

from eve.data.video import fit_size, resize
from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import ddim_timesteps
from eve.editing.windows import window_slices
from eve.errors import EveError
from eve.models.composed import Cond, EveModel, Role
from eve.models.known import Known
from eve.tasks import task_id

logger = logging.getLogger(__name__)


def noise(shape: tuple, generator: torch.Generator, device) -> Tensor:
    """Noise drawn on the CPU generator, then moved: results do not depend on the device."""
    return torch.randn(shape, generator=generator).to(device)


@torch.no_grad()
def edit_first_frame(model: EveModel, src0: Tensor, base: Cond, *, steps: Tensor, text_scale: float,
                     image_scale: float, generator: torch.Generator) -> Tensor:
    """The edit teacher's edit of frame 0: src0 [B, 1, 3, H, W] -> latents [B, C, h, w]."""
    B = src0.shape[0]
    shape = (B, 1, model.latent_channels, src0.shape[-2] // model.codec.scale_factor,
             src0.shape[-1] // model.codec.scale_factor)
    cond = Cond(base.caption, base.instruction, src0, base.task)
    den = model.denoiser(cond, Role.EDIT_TEACHER, text_scale=text_scale, image_scale=image_scale)
    return sample(den, noise(shape, generator, model.device), steps, model.schedule)[:, 0]


@torch.no_grad()
def edit_windows(model: EveModel, src: Tensor, base: Cond, first: Tensor, *, steps: Tensor, overlap: int,
                 role: Role = Role.STUDENT, text_scale: float = 1.0, image_scale: float = 1.0,
                 generator: torch.Generator, progress=None) -> Tensor:
    """Edit clips src [B, N, 3, H, W] given their edited first frames [B, C, h, w]: sliding windows of the video
    adapter's frame count, each conditioned on the frames edited before it. Returns latents [B, N, C, h, w]."""
    B, N = src.shape[:2]
    shape = first.shape[1:]
    edited = torch.zeros(B, N, *shape, device=model.device)
    edited[:, 0] = first
    for win in window_slices(N, model.num_frames, overlap) if N > 1 else []:
        F = win.stop - win.start
        mask = torch.zeros(F, dtype=torch.bool)
        mask[: win.known] = True
        known = Known(edited[:, win.start : win.stop].clone(), mask, noise((B, F, *shape), generator, model.device))
        cond = Cond(base.caption, base.instruction, src[:, win.start : win.stop], base.task, known)
        x = noise((B, F, *shape), generator, model.device)
        out = sample(model.denoiser(cond, role, text_scale=text_scale, image_scale=image_scale), x, steps, model.schedule)
        edited[:, win.new.start : win.new.stop] = out[:, win.known :]
        if progress is not None:
            progress.update()
    return edited


class Editor:
    """Edits videos [F, 3, H, W] in [-1, 1] with an EveModel (LoRA loaded or not) and an EditConfig."""

    def __init__(self, model: EveModel, cfg, *, progress: bool = True):
        self.model = model
        self.cfg = cfg
        self.progress = progress

    @classmethod
    def from_config(cls, cfg, checkpoint: str | None = None, *, progress: bool = True) -> Editor:
        """Load the model an EveConfig names; `checkpoint` is a trained LoRA (without it: plug-and-play)."""
        from eve.models.lora import load_lora

        model = EveModel.from_config(cfg.model)
        if checkpoint is not None:
            load_lora(model.unet, checkpoint)
        return cls(model, cfg.edit, progress=progress)

    def _steps(self, n: int) -> Tensor:
        return ddim_timesteps(n, self.model.schedule.num_train_timesteps, self.cfg.timestep_spacing)

    @torch.no_grad()
    def edit(
        self,
        frames: Tensor,
        instruction: str,
        caption: str | None = None,
        *,
        task: str | None = None,
        seed: int | None = None,
    ) -> Tensor:
        """Edited frames, same shape as `frames` [F, 3, H, W] in [-1, 1].

        Args:
            instruction: what to change ("make the car red"), seen by the edit adapter.
            caption: the output caption ("a red car on a road"), seen by the backbone; defaults to the instruction
                (the single-prompt setting the ip2p ControlNet was trained with).
            task: one of eve.tasks.TASKS; needed by edit adapters trained with task labels.
            seed: noise seed (default: edit.seed); results do not depend on the device.
        """
        cfg, m = self.cfg, self.model
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 1:
            raise EveError(f"expected frames [F, 3, H, W] with F >= 1, got {tuple(frames.shape)}")
        if not instruction or not instruction.strip():
            raise EveError("the instruction is empty")
        caption = caption.strip() if caption and caption.strip() else instruction
        tasks = None if task is None else torch.tensor([task_id(task)])
        if m.task_conditioned and tasks is None:
            raise EveError("this edit adapter was trained with task labels: give a task (--task)")
        gen = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
        N, _, H, W = frames.shape
        size = fit_size(H, W, m.resolution, m.size_multiple, cfg.max_long_side)
        src = resize(frames, size).unsqueeze(0).to(m.device)  # [1, N, 3, h, w]
        text = m.encode_text([caption, instruction])
        base = Cond(caption=text[:1], instruction=text[1:], task=tasks)
        num_windows = len(window_slices(N, m.num_frames, cfg.window_overlap)) if N > 1 else 0
        bar = tqdm(total=1 + num_windows, desc="edit", unit="window", disable=not self.progress)
        # 1. Frame 0 by the edit teacher alone (paper: "we edit the first frame using the edit adapter").
        first = edit_first_frame(m, src[:, :1], base, steps=self._steps(cfg.teacher_steps),
                                 text_scale=cfg.teacher_guidance, image_scale=cfg.teacher_image_guidance, generator=gen)
        bar.update()
        # 2. The clip by the student, window by window, each conditioned on the frames edited before it.
        edited = edit_windows(m, src, base, first, steps=self._steps(cfg.steps), overlap=cfg.window_overlap,
                              text_scale=cfg.guidance, image_scale=cfg.image_guidance, generator=gen, progress=bar)
        bar.close()
        pixels = m.decode_video(edited)[0].cpu()
        return resize(pixels, (H, W)).clamp(-1, 1)
