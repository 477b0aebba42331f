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
        lh, lw = size[0] // m.codec.scale_factor, size[1] // m.codec.scale_factor
        shape = (m.latent_channels, lh, lw)
        text = m.encode_text([caption, instruction])
        base = Cond(caption=text[:1], instruction=text[1:], task=tasks)
        windows = window_slices(N, m.num_frames, cfg.window_overlap) if N > 1 else []
        edited = torch.zeros(1, N, *shape, device=m.device)
        bar = tqdm(total=1 + len(windows), desc="edit", unit="window", disable=not self.progress)

        # 1. Frame 0 by the edit teacher alone (paper: "we edit the first frame using the edit adapter").
        cond = base.frames(slice(0, 1))
        cond.source = src[:, :1]
        x = torch.randn(1, 1, *shape, generator=gen).to(m.device)
        den = m.denoiser(cond, Role.EDIT_TEACHER, text_scale=cfg.teacher_guidance, image_scale=cfg.teacher_image_guidance)
        edited[:, :1] = sample(den, x, self._steps(cfg.teacher_steps), m.schedule)
        bar.update()

        # 2. The clip by the student, window by window, each conditioned on the frames edited before it.
        for win in windows:
            F = win.stop - win.start
            mask = torch.zeros(F, dtype=torch.bool)
            mask[: win.known] = True
            noise = torch.randn(1, F, *shape, generator=gen).to(m.device)
            known = Known(edited[:, win.start : win.stop].clone(), mask, noise)
            cond = Cond(base.caption, base.instruction, src[:, win.start : win.stop], tasks, known)
            x = torch.randn(1, F, *shape, generator=gen).to(m.device)
            den = m.denoiser(cond, Role.STUDENT, text_scale=cfg.guidance, image_scale=cfg.image_guidance)
            out = sample(den, x, self._steps(cfg.steps), m.schedule)
            edited[:, win.new.start : win.new.stop] = out[:, win.known :]
            bar.update()
        bar.close()
        pixels = m.decode_video(edited)[0].cpu()
        return resize(pixels, (H, W)).clamp(-1, 1)
