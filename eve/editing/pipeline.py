"""EveVideoEditPipeline: edit a clip of any length and aspect ratio with a text instruction (paper §4, "Training
Details"), as a diffusers pipeline; `edit.py` and the Python API both run it.

1. Resize to the working size (eve.data.video.fit_size: aspect ratio kept, short side = model.resolution, sides
   rounded to the model's size multiple; no cropping) frame by frame as the clip is read, and back to the source
   size as each window is decoded (`edit_stream`: memory does not grow with the clip, eve/editing/frames.py).
2. Edit frame 0 with the edit teacher (many DDIM steps, ip2p-style text and image guidance). With a user's style or
   subject LoRA θ_LoRA (model.lora, `load_lora_weights(..., adapter_name="user")`), frame 0 is edited by
   [θ, θ_edit, θ_LoRA, θ_align] as an image (motion modules off): the aligned student of LoRA alignment (paper §4.4)
   at the student's steps, or without θ_align plug-and-play at the edit teacher's steps and guidance.
3. Edit the clip with the student over sliding windows of the video adapter's frame count; each window is
   conditioned on the frames already edited (frame 0 for the first, the overlap for the others). An image (one
   frame) is done after step 2.

Without a caption or a task, `describe` predicts the task from the instruction and writes the output caption from
the first frame (issue 11).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from torch import Tensor

from eve.data.video import fit_size, resize
from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import ddim_timesteps
from eve.editing.describe import Describer
from eve.editing.frames import Clip
from eve.editing.windows import next_window, reach, window_slices
from eve.errors import EveError
from eve.models.composed import Cond, EveModel, Role
from eve.models.known import Known
from eve.models.lora import has_lora
from eve.tasks import task_id

logger = logging.getLogger(__name__)


def noise(shape: tuple, generator: torch.Generator, device) -> Tensor:
    """Noise drawn on the CPU generator, then moved: results do not depend on the device."""
    return torch.randn(shape, generator=generator).to(device)


@torch.no_grad()
def edit_first_frame(model: EveModel, src0: Tensor, base: Cond, *, steps: Tensor, text_scale: float,
                     image_scale: float, generator: torch.Generator, role: Role = Role.EDIT_TEACHER,
                     shared_noise: bool = False) -> Tensor:
    """The edit of frame 0 as an image (motion modules off): src0 [B, 1, 3, H, W] -> latents [B, C, h, w]. By the
    edit teacher (paper §4), or by `role` (the LoRA-aligned student edits images). `shared_noise`: one noise for
    every row (frames of one clip edited as images, as alike as images can be)."""
    B = src0.shape[0]
    shape = (1 if shared_noise else B, 1, model.latent_channels, src0.shape[-2] // model.codec.scale_factor,
             src0.shape[-1] // model.codec.scale_factor)
    cond = Cond(base.caption, base.instruction, src0, base.task)
    den = model.denoiser(cond, role, text_scale=text_scale, image_scale=image_scale)
    with model.per_frame():
        return sample(den, noise(shape, generator, model.device).expand(B, -1, -1, -1, -1).contiguous(), steps,
                      model.schedule)[:, 0]


@torch.no_grad()
def sdedit(model: EveModel, src: Tensor, caption: Tensor, *, steps: Tensor, strength: float, text_scale: float,
           generator: torch.Generator) -> Tensor:
    """SDEdit (Meng et al. 2022) frame by frame: src [B, N, 3, H, W] encoded, noised to t = strength * T (one noise
    for every frame), and denoised by the backbone alone (no adapter, no LoRA) with the caption [B, L, D] over the
    inference timesteps from there; latents [B, N, C, h, w]."""
    x0 = model.encode_video(src)
    B, N = x0.shape[:2]
    start = strength * model.schedule.num_train_timesteps
    ts = steps[steps <= start] if bool((steps <= start).any()) else steps[-1:]
    eps = noise((B, 1, *x0.shape[2:]), generator, model.device).expand(-1, N, -1, -1, -1).contiguous()
    xt = model.schedule.add_noise(x0, eps, ts[:1].expand(B))
    flat = lambda x: x.flatten(0, 1)[:, None]  # noqa: E731 (the frames as a batch of images)
    den = model.denoiser(Cond(caption.repeat_interleave(N, 0)), Role.VIDEO_TEACHER, text_scale=text_scale)
    with model.per_frame():  # the video teacher without its motion modules and known frame: the backbone alone
        return sample(den, flat(xt), ts, model.schedule)[:, 0].unflatten(0, (B, N))


@torch.no_grad()
def edit_windows(model: EveModel, src: Tensor, base: Cond, first: Tensor, *, steps: Tensor, overlap: int,
                 role: Role = Role.STUDENT, text_scale: float = 1.0, image_scale: float = 1.0,
                 generator: torch.Generator, progress=None) -> Tensor:
    """Edit whole clips src [B, N, 3, H, W] given their edited first frames [B, C, h, w] (`stream_windows` over a
    tensor). Returns latents [B, N, C, h, w]."""
    return torch.cat(list(stream_windows(model, Clip(src), base, first, steps=steps, overlap=overlap, role=role,
                                         text_scale=text_scale, image_scale=image_scale, generator=generator,
                                         progress=progress)), 1)


def stream_windows(model: EveModel, clip: Clip, base: Cond, first: Tensor, *, steps: Tensor, overlap: int,
                   role: Role = Role.STUDENT, text_scale: float = 1.0, image_scale: float = 1.0,
                   generator: torch.Generator, progress=None) -> Iterator[Tensor]:
    """Edit a clip given its edited first frame [B, C, h, w]: sliding windows of the video adapter's frame count,
    each conditioned on the frames edited before it. Yields latents [B, n, C, h, w] of consecutive frames, frame 0
    first, as each window is done; the clip is read as far as each window needs and what no later window can use
    is released, so a streamed clip of any length holds at most two windows' frames."""
    length = model.num_frames
    B, shape = first.shape[0], first.shape[1:]
    edited = {0: first}  # latents [B, C, h, w] of edited frames a later window may still use
    yield first[:, None]
    done = 1
    while (win := next_window(done, clip.fill(reach(done, length, overlap)), length, overlap)) is not None:
        F = win.stop - win.start
        mask = torch.zeros(F, dtype=torch.bool)
        mask[: win.known] = True
        known = torch.zeros(B, F, *shape, device=model.device)
        known[:, : win.known] = torch.stack([edited[i] for i in range(win.start, done)], 1)
        known = Known(known, mask, noise((B, F, *shape), generator, model.device))
        cond = Cond(base.caption, base.instruction, clip.get(win.start, win.stop), base.task, known)
        x = noise((B, F, *shape), generator, model.device)
        out = sample(model.denoiser(cond, role, text_scale=text_scale, image_scale=image_scale), x, steps, model.schedule)
        new = out[:, win.known :]
        edited |= {i: new[:, j] for j, i in enumerate(win.new)}
        done = win.stop
        keep = done - length  # no later window starts before this (eve.editing.windows.next_window)
        edited = {i: e for i, e in edited.items() if i >= keep}
        clip.release(keep)
        if progress is not None:
            progress.update()
        yield new


@dataclass
class EveVideoEditPipelineOutput(BaseOutput):
    """frames: [F, 3, H, W] in [0, 1] ("pt"), [F, H, W, 3] in [0, 1] ("np"), or a list of PIL images ("pil");
    task and caption: what the edit used (given, or predicted and written)."""

    frames: Any
    task: str
    caption: str


class EveVideoEditPipeline(DiffusionPipeline):
    """Edit a video with a text instruction: EVE's composed model as a diffusers pipeline.

    Components (diffusers / transformers classes, saved by `save_pretrained` with a `model_index.json`): `unet` (a
    `UNetMotionModel`, composed from a `UNet2DConditionModel` and `motion_adapter` when given the 2D one),
    `controlnet` (the edit adapter), `text_encoder`, `tokenizer`, `scheduler` (its config is the noise schedule),
    optional `vae` (none: a pixel-space backbone), `motion_adapter` and `sparsectrl`. Settings: the ModelConfig
    fields that shape the model (`num_frames`, `resolution`, `first_frame`, ...) and `edit` (EditConfig fields: the
    defaults of `__call__`). `from_pretrained` also takes an eve folder (an `eve.yaml` beside the weights: the tiny
    set, the shapes world's teachers) and `load_lora_weights` any LoRA file eve reads, as the student's θ_align.
    """

    _optional_components = ["vae", "motion_adapter", "sparsectrl"]

    def __init__(self, unet, controlnet, text_encoder, tokenizer, scheduler, vae=None, motion_adapter=None,
                 sparsectrl=None, *, num_frames: int = 8, resolution: int = 512, first_frame: str = "replace",
                 controlnet_text: str = "instruction", controlnet_scale: float = 1.0, sparsectrl_scale: float = 1.0,
                 batch_guidance: bool = True, edit: dict | None = None):
        super().__init__()
        from diffusers import UNet2DConditionModel, UNetMotionModel

        from eve.config import EditConfig
        from eve.models.build import schedule_from
        from eve.models.codec import IdentityCodec, VaeCodec
        from eve.models.text import TextEncoder

        if isinstance(unet, UNet2DConditionModel):
            if motion_adapter is None:
                raise EveError("a UNet2DConditionModel needs a motion_adapter to compose the video backbone")
            unet = UNetMotionModel.from_unet2d(unet, motion_adapter)
        self.register_modules(unet=unet, controlnet=controlnet, text_encoder=text_encoder, tokenizer=tokenizer,
                              scheduler=scheduler, vae=vae, motion_adapter=motion_adapter, sparsectrl=sparsectrl)
        edit_cfg = EditConfig(**(edit or {}))
        self.register_to_config(num_frames=num_frames, resolution=resolution, first_frame=first_frame,
                                controlnet_text=controlnet_text, controlnet_scale=controlnet_scale,
                                sparsectrl_scale=sparsectrl_scale, batch_guidance=batch_guidance, edit=asdict(edit_cfg))
        codec = VaeCodec(vae) if vae is not None else IdentityCodec(unet.config.in_channels)
        # The composed model shares every module with the pipeline (no copies): roles are switches over them.
        self.model = EveModel(unet, controlnet, TextEncoder(tokenizer, text_encoder), codec,
                              schedule_from(dict(scheduler.config)), sparsectrl=sparsectrl, num_frames=num_frames,
                              resolution=resolution, first_frame=first_frame, controlnet_text=controlnet_text,
                              controlnet_scale=controlnet_scale, sparsectrl_scale=sparsectrl_scale,
                              batch_guidance=batch_guidance)
        self.edit_cfg = edit_cfg
        self.describe = Describer(edit_cfg)  # task and output caption when the user gives only an instruction

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_eve_config(cls, cfg) -> EveVideoEditPipeline:
        """The pipeline an EveConfig names (`model` weights, `edit` defaults), loaded by eve's loaders."""
        from diffusers import DDIMScheduler

        from eve.models.build import load_parts
        from eve.models.loading import from_pretrained

        parts = load_parts(cfg.model)
        schedule = parts["schedule"]
        base = from_pretrained(DDIMScheduler, cfg.model.pretrained, "pretrained", "scheduler")
        scheduler = DDIMScheduler.from_config(base.config, prediction_type=schedule.prediction_type,
                                              rescale_betas_zero_snr=bool(cfg.model.zero_terminal_snr
                                                                          if cfg.model.zero_terminal_snr is not None
                                                                          else base.config.rescale_betas_zero_snr))
        vae = getattr(parts["codec"], "vae", None)
        pipe = cls(parts["unet"], parts["controlnet"], parts["text"].encoder, parts["text"].tokenizer, scheduler,
                   vae=vae, sparsectrl=parts["sparsectrl"], num_frames=parts["num_frames"],
                   resolution=parts["resolution"], first_frame=parts["first_frame"],
                   controlnet_text=parts["controlnet_text"], controlnet_scale=parts["controlnet_scale"],
                   sparsectrl_scale=parts["sparsectrl_scale"], batch_guidance=parts["batch_guidance"],
                   edit=asdict(cfg.edit))
        if cfg.model.lora:
            pipe.load_lora_weights(cfg.model.lora, adapter_name="user")
        return pipe

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> EveVideoEditPipeline:
        """A folder `save_pretrained` wrote (model_index.json), or an eve folder (eve.yaml beside the weights)."""
        folder = Path(str(pretrained_model_name_or_path))
        if not (folder / "model_index.json").is_file() and (folder / "eve.yaml").is_file():
            from eve.config import load_config
            from eve.models.loading import DTYPES

            overrides = list(kwargs.pop("overrides", None) or [])
            dtype = kwargs.pop("torch_dtype", None)
            if dtype is not None:
                overrides.append(f"model.dtype={next(k for k, v in DTYPES.items() if v == dtype)}")
            if args or kwargs:
                raise EveError(f"an eve folder takes overrides=[...] and torch_dtype, not {sorted(kwargs) or args}")
            return cls.from_eve_config(load_config(folder / "eve.yaml", overrides))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict, adapter_name: str | None = None, *,
                          weight_name: str | None = None, **kwargs):
        """Attach a LoRA (eve, diffusers, diffusers training scripts, kohya/A1111, peft; a file, or a folder with
        an optional `weight_name`), read by diffusers' and peft's loaders (eve/models/lora.py):

        * adapter_name None or "student": the student's θ_align (an FDD checkpoint), text-encoder layers included;
        * adapter_name "user": a user's style or subject LoRA θ_LoRA (UNet layers only), beside θ_align, as LoRA
          alignment trained it (paper §4.4); without θ_align it is plug-and-play with the edit adapter.

        One LoRA per name. Hub ids and in-memory state dicts are not taken: save the file first."""
        if adapter_name not in (None, "student", "user"):
            raise EveError(f"adapter_name must be 'student' (θ_align, the default) or 'user' (a style or subject "
                           f"LoRA), got {adapter_name!r}")
        if kwargs:
            raise EveError(f"load_lora_weights takes a path and weight_name, not {', '.join(sorted(kwargs))}")
        if not isinstance(pretrained_model_name_or_path_or_dict, (str, Path)):
            raise EveError("load_lora_weights takes the path of a LoRA file or folder, not a state dict")
        path = Path(pretrained_model_name_or_path_or_dict)
        path = path / weight_name if weight_name else path
        return self.model.attach_user_lora(path) if adapter_name == "user" else self.model.load_lora(path)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers' own, refused while a LoRA is attached (its wrapped layers would be saved as the weights):
        call `unload_lora_weights()` first, and save the LoRA with `python -m eve.export`."""
        if has_lora(self.unet) or self.model.text.has_lora or self.model.has_user_lora:
            raise EveError("a LoRA is attached: unload_lora_weights() before save_pretrained (the LoRA file is saved "
                           "on its own)")
        return super().save_pretrained(save_directory, *args, **kwargs)

    def unload_lora_weights(self) -> None:
        """Drop every LoRA (the student's and a user's)."""
        self.model.unload_lora()
        self.model.detach_user_lora()

    def _steps(self, n: int) -> Tensor:
        return ddim_timesteps(n, self.model.schedule.num_train_timesteps, self.edit_cfg.timestep_spacing)

    @torch.no_grad()
    def __call__(
        self,
        video,
        instruction: str,
        caption: str | None = None,
        *,
        task: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        image_guidance_scale: float | None = None,
        first_frame_steps: int | None = None,
        first_frame=None,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
        method: str = "eve",
        strength: float = 0.6,
    ):
        """Edit a clip of any length and aspect ratio held in memory (`edit_stream` edits one read from a file).

        Args:
            video: frames as a tensor [F, 3, H, W] in [-1, 1], a uint8 array [F, H, W, 3], or a list of PIL images.
            instruction: what to change ("make the car red"), seen by the edit adapter.
            caption: the output caption ("a red car on a road"), seen by the backbone; default: written from the
                first frame and the instruction (eve/editing/describe.py), or the instruction itself when no
                captioner is set.
            task: one of eve.tasks.TASKS, for edit adapters trained with task labels; default: predicted from
                the instruction (eve/editing/describe.py).
            num_inference_steps, guidance_scale, image_guidance_scale: the student's (edit.steps, edit.guidance,
                edit.image_guidance); first_frame_steps: the edit teacher's for frame 0 (edit.teacher_steps), or
                with a user LoRA and no student, plug-and-play's for frame 0.
            first_frame: frame 0 already edited ([3, H, W] in [-1, 1], a uint8 array [H, W, 3] or a PIL image, the
                clip's size): a cached edit, used as it is instead of editing frame 0 (method "eve" only).
            generator: a CPU torch.Generator (default: seeded with edit.seed); results do not depend on the device.
            output_type: "pt", "np" or "pil" (values in [0, 1]).
            method: "eve" (frame 0, then the clip over windows), or a baseline on the same resize, description and
                noise: "teacher" (the edit teacher on every frame as an image, one noise for all, its steps and
                guidance) or "sdedit" (`sdedit`: the backbone alone from the source noised to `strength` of the
                schedule, the edit teacher's steps and text guidance).
        """
        if output_type not in ("pt", "np", "pil"):
            raise EveError(f"output_type must be pt, np or pil, got {output_type!r}")
        frames = as_frames(video)
        edited: list[Tensor] = []
        task, caption = self.edit_stream(frames, instruction, caption, edited.append, task=task,
                                         num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                         image_guidance_scale=image_guidance_scale, first_frame_steps=first_frame_steps,
                                         first_frame=None if first_frame is None else as_frame(first_frame),
                                         generator=generator, method=method, strength=strength,
                                         num_frames=frames.shape[0])
        out = to_output((torch.cat(edited) + 1) / 2, output_type)
        return EveVideoEditPipelineOutput(out, task, caption) if return_dict else (out,)

    @torch.no_grad()
    def edit_stream(self, frames: Iterable[Tensor], instruction: str, caption: str | None,
                    write: Callable[[Tensor], None], *, task: str | None = None,
                    num_inference_steps: int | None = None, guidance_scale: float | None = None,
                    image_guidance_scale: float | None = None, first_frame_steps: int | None = None,
                    first_frame: Tensor | None = None, generator: torch.Generator | None = None,
                    method: str = "eve", strength: float = 0.6, num_frames: int | None = None) -> tuple[str, str]:
        """`__call__`'s edit, frame by frame: `frames` yields source-size frames [3, H, W] in [-1, 1]
        (eve.data.video.VideoReader), and `write` is given each edited frame [1, 3, H, W] in [-1, 1] at the source
        size, in order, as soon as its window is done. Each frame is resized to the working size as it is read and
        dropped once no window needs it, and each window is decoded and upsampled on its own, so memory does not
        grow with the clip's length or source resolution. `num_frames` (when known) only sizes the progress bar.
        Returns (task, caption) as used."""
        cfg, m = self.edit_cfg, self.model
        if method not in ("eve", "teacher", "sdedit"):
            raise EveError(f"method must be eve, teacher or sdedit, got {method!r}")
        if method == "sdedit" and not 0 < strength <= 1:
            raise EveError(f"strength must be in (0, 1], got {strength}")
        if not instruction or not instruction.strip():
            raise EveError("the instruction is empty")
        frames = iter(frames)
        first = next(frames, None)
        if first is None:
            raise EveError("the clip has no frames")
        task, caption = self.describe(first, instruction, caption, task)
        tasks = torch.tensor([task_id(task)])
        gen = generator if generator is not None else torch.Generator().manual_seed(cfg.seed)
        H, W = first.shape[-2:]
        if first_frame is not None and (method != "eve" or tuple(first_frame.shape) != (3, H, W)):
            raise EveError(f"the edited first frame must be a [3, {H}, {W}] frame (the clip's size), for method eve; "
                           f"got {list(first_frame.shape)} for method {method}")
        size = fit_size(H, W, m.resolution, m.size_multiple, cfg.max_long_side)
        clip = Clip(stream=itertools.chain([first], frames), size=size, device=m.device)
        if method == "eve":
            chunks = self._eve(clip, caption, instruction, tasks, steps=num_inference_steps, guidance=guidance_scale,
                               image_guidance=image_guidance_scale, first_frame_steps=first_frame_steps,
                               first_frame=None if first_frame is None else resize(first_frame[None], size)[0],
                               generator=gen, num_frames=num_frames)
        else:
            chunks = self._baseline(method, clip, caption, instruction, tasks, steps=given(first_frame_steps,
                                    cfg.teacher_steps), strength=strength, generator=gen, num_frames=num_frames)
        for latents in chunks:  # decoded and upsampled a window, then a frame, at a time
            for frame in m.decode_video(latents)[0].cpu():
                write(resize(frame[None], (H, W)).clamp(-1, 1))
        return task, caption

    def _eve(self, clip: Clip, caption: str, instruction: str, tasks: Tensor, *, steps: int | None,
             guidance: float | None, image_guidance: float | None, first_frame_steps: int | None,
             first_frame: Tensor | None, generator: torch.Generator, num_frames: int | None) -> Iterator[Tensor]:
        """Latents [1, n, C, h, w] of EVE's edit (`__call__`'s `method="eve"`), window by window: frame 0 (or
        `first_frame`, a cached edit at the working size), then the clip over windows."""
        cfg, m = self.edit_cfg, self.model
        total = 1 + len(window_slices(num_frames, m.num_frames, cfg.window_overlap)) if num_frames else None
        with self.progress_bar(total=total) as bar:
            first = self._first_frame(clip, caption, instruction, tasks, steps=steps, guidance=guidance,
                                      image_guidance=image_guidance, first_frame_steps=first_frame_steps,
                                      given_frame=first_frame, generator=generator)
            bar.update()
            # 2. The clip by the student, window by window, each conditioned on the frames edited before it (the
            # caption read through the student's text-encoder LoRA, when its file has one).
            text = m.encode_text([caption, instruction], Role.STUDENT)
            base = Cond(caption=text[:1], instruction=text[1:], task=tasks)
            yield from stream_windows(m, clip, base, first, steps=self._steps(given(steps, cfg.steps)),
                                      overlap=cfg.window_overlap, text_scale=given(guidance, cfg.guidance),
                                      image_scale=given(image_guidance, cfg.image_guidance), generator=generator,
                                      progress=bar)

    def _first_frame(self, clip: Clip, caption: str, instruction: str, tasks: Tensor, *, steps: int | None,
                     guidance: float | None, image_guidance: float | None, first_frame_steps: int | None,
                     given_frame: Tensor | None, generator: torch.Generator) -> Tensor:
        """Latents [1, C, h, w] of frame 0's edit, as an image (motion modules off), by (edit.first_frame_by):

        * "teacher": the edit teacher alone (paper: "we edit the first frame using the edit adapter") at
          edit.teacher_steps with its text and image guidance;
        * "student": the student's own spatial path [θ, θ_edit, θ_align] at its steps and guidance (k network
          evaluations instead of the teacher's 3 x teacher_steps; without a student LoRA, the teacher);
        * with a user LoRA: [θ, θ_edit, θ_LoRA(, θ_align)] (paper §4.4), the aligned student at its steps, or
          without θ_align plug-and-play at the teacher's;
        * `given_frame` (a cached edit, [3, h, w] at the working size): encoded as it is, no network evaluation.
        """
        cfg, m = self.edit_cfg, self.model
        if given_frame is not None:
            return m.encode_video(given_frame[None, None])[:, 0]
        student = has_lora(m.unet) and (m.has_user_lora or cfg.first_frame_by == "student")
        role = Role.STUDENT if m.has_user_lora or student else Role.EDIT_TEACHER
        text = m.encode_text([caption, instruction], role)
        base = Cond(caption=text[:1], instruction=text[1:], task=tasks)
        if student:  # distilled: its own steps and guidance
            first_steps = given(steps, cfg.steps)
            scales = given(guidance, cfg.guidance), given(image_guidance, cfg.image_guidance)
        else:  # a teacher, or plug-and-play with a user LoRA: undistilled, the edit teacher's sampler
            first_steps = given(first_frame_steps, cfg.teacher_steps)
            scales = cfg.teacher_guidance, cfg.teacher_image_guidance
        clip.fill(1)
        return edit_first_frame(m, clip.get(0, 1), base, steps=self._steps(first_steps), text_scale=scales[0],
                                image_scale=scales[1], generator=generator, role=role)

    def _baseline(self, method: str, clip: Clip, caption: str, instruction: str, tasks: Tensor, *, steps: int,
                  strength: float, generator: torch.Generator, num_frames: int | None) -> Iterator[Tensor]:
        """Latents [1, n, C, h, w] of a baseline (`__call__`'s `method`), in chunks of the video adapter's frame
        count."""
        cfg, m = self.edit_cfg, self.model
        text = m.encode_text([caption, instruction], Role.EDIT_TEACHER)
        state = generator.get_state()
        start = 0
        with self.progress_bar(total=-(-num_frames // m.num_frames) if num_frames else None) as bar:
            while (stop := clip.fill(start + m.num_frames)) > start:
                chunk = clip.get(start, stop)[0]
                generator.set_state(state)  # the same noise for every chunk: one noise for the whole clip
                n = chunk.shape[0]
                if method == "teacher":
                    base = Cond(caption=text[:1].expand(n, -1, -1), instruction=text[1:].expand(n, -1, -1),
                                task=tasks.expand(n))
                    yield edit_first_frame(m, chunk[:, None], base, steps=self._steps(steps),
                                           text_scale=cfg.teacher_guidance, image_scale=cfg.teacher_image_guidance,
                                           generator=generator, shared_noise=True)[None]
                else:
                    yield sdedit(m, chunk[None], text[:1], steps=self._steps(steps), strength=strength,
                                 text_scale=cfg.teacher_guidance, generator=generator)
                clip.release(stop)
                start = stop
                bar.update()


def given(value, default):
    """A call argument, or the config's default when it was not given (0 is a value)."""
    return default if value is None else value


def as_frames(video) -> Tensor:
    """[F, 3, H, W] in [-1, 1] from a tensor in that form, a uint8 array [F, H, W, 3] or a list of PIL images."""
    import numpy as np

    if isinstance(video, (list, tuple)) and video and hasattr(video[0], "convert"):
        video = np.stack([np.asarray(im.convert("RGB")) for im in video])
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise EveError(f"expected a uint8 array [F, H, W, 3], got {video.dtype} {video.shape}")
        video = torch.from_numpy(video).permute(0, 3, 1, 2).float() / 127.5 - 1
    if not isinstance(video, Tensor) or video.ndim != 4 or video.shape[1] != 3 or video.shape[0] < 1:
        raise EveError(f"expected frames [F, 3, H, W] with F >= 1, got {getattr(video, 'shape', type(video))}")
    return video.float()


def as_frame(image) -> Tensor:
    """One frame [3, H, W] in [-1, 1] from a tensor in that form, a uint8 array [H, W, 3] or a PIL image."""
    import numpy as np

    if isinstance(image, Tensor):
        return as_frames(image[None])[0]
    return as_frames([image] if hasattr(image, "convert") else np.asarray(image)[None])[0]


def to_output(frames: Tensor, output_type: str):
    """frames [F, 3, H, W] in [0, 1] as diffusers' output types."""
    if output_type == "pt":
        return frames
    array = frames.permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    if output_type == "pil":
        from PIL import Image

        return [Image.fromarray((a * 255).round().astype("uint8")) for a in array]
    raise EveError(f"output_type must be pt, np or pil, got {output_type!r}")
