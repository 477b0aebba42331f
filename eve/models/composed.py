"""EVE's composed model: one set of frozen weights serving every role of the paper (§3.1).

    backbone θ   UNetMotionModel = the T2I UNet + the MotionAdapter θ_video, built once (diffusers `from_unet2d`)
    θ_edit       ControlNetModel, run per frame on (input frame, instruction[, task]); residuals into the backbone
    θ_align      peft LoRA on the backbone's spatial layers (eve/models/lora.py), the only trained weights
    θ_LoRA       optionally, a user's frozen style or subject LoRA beside it (LoRA alignment, paper §4.4)
    known frames already-edited frames (the edited first frame) condition the video adapter (eve/models/known.py)

Roles are switches over those weights, never copies (ROLE_SWITCHES). Contract at this boundary:
video tensors are [B, F, C, H, W], timesteps are [B] integers, and `forward` returns the backbone's raw output
(eps, v or x0, as `schedule.prediction_type` says) in [B, F, C, h, w]. The conversions to diffusers' layouts,
[B, C, F, H, W] for the motion UNet and [(B F), C, H, W] for the ControlNet, happen in this file only.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from typing import Iterator

import torch
import torch.nn.functional as F_
from torch import Tensor, nn

from eve.diffusion.guidance import cfg as cfg_combine
from eve.diffusion.guidance import dual_cfg
from eve.diffusion.schedule import NoiseSchedule
from eve.errors import EveError
from eve.models import known as known_frames
from eve.models.known import Known
from eve.models.lora import add_lora, has_lora, lora_parameters

logger = logging.getLogger(__name__)


class Role(str, Enum):
    EDIT_TEACHER = "edit_teacher"  # ψ = [θ, θ_edit]: frames independent
    VIDEO_TEACHER = "video_teacher"  # ρ = [θ, θ_video], first-frame conditioned
    PLUG_AND_PLAY = "plug_and_play"  # η = [θ, θ_edit, θ_video(, θ_LoRA)], the "w/o alignment" ablation
    STUDENT = "student"  # ϕ = [θ, θ_edit, θ_video(, θ_LoRA), θ_align]
    LORA_TEACHER = "lora_teacher"  # [θ, θ_LoRA]: a user's style or subject LoRA alone (paper §4.4)


@dataclass(frozen=True)
class Switches:
    edit: bool  # ControlNet residuals
    motion: bool  # motion modules (off: each frame is denoised on its own)
    lora: bool  # student LoRA θ_align
    known: bool  # already-edited frames condition the clip
    user: bool = False  # the user's LoRA θ_LoRA, when one is attached (LoRA alignment)
    fake: str | None = None  # a fake-score LoRA on top (distribution matching: `fake_switches`), by adapter name


ROLE_SWITCHES = {
    Role.EDIT_TEACHER: Switches(edit=True, motion=False, lora=False, known=False),
    Role.VIDEO_TEACHER: Switches(edit=False, motion=True, lora=False, known=True),
    Role.PLUG_AND_PLAY: Switches(edit=True, motion=True, lora=False, known=True, user=True),
    Role.STUDENT: Switches(edit=True, motion=True, lora=True, known=True, user=True),
    Role.LORA_TEACHER: Switches(edit=False, motion=False, lora=False, known=False, user=True),
}


def fake_switches(role: Role, adapter: str) -> Switches:
    """A teacher's configuration with a fake-score LoRA on top: what that teacher would predict had it been trained
    on the student's outputs (distribution matching, DMD / VSD)."""
    return replace(ROLE_SWITCHES[Role(role)], fake=adapter)


@dataclass
class Cond:
    """Conditioning of a batch of clips.

    caption: [B, L, D] output-caption embedding, seen by the backbone.
    instruction: [B, L, D] instruction embedding, seen by the ControlNet (model.controlnet_text).
    source: [B, F, 3, H, W] input frames in [-1, 1] at the working size, seen by the ControlNet.
    task: [B] task ids, for an edit adapter with task embeddings (diffusers `num_class_embeds`).
    known: already-edited frames, for the video adapter.
    """

    caption: Tensor
    instruction: Tensor | None = None
    source: Tensor | None = None
    task: Tensor | None = None
    known: Known | None = None

    def frames(self, index: slice | list[int]) -> Cond:
        """The same conditioning restricted to some frames (per-frame teachers, windows)."""
        return replace(
            self,
            source=None if self.source is None else self.source[:, index],
            known=None if self.known is None else self.known.frames(index),
        )


def cat_conds(conds: list[Cond]) -> Cond:
    """Conditionings of equal batch size as one batch (the order kept: batch_guidance's branches)."""
    def cat(values: list[Tensor | None]) -> Tensor | None:
        return None if values[0] is None else torch.cat(values)

    known = None
    if conds[0].known is not None:
        ks = [c.known for c in conds]
        known = Known(cat([k.latents for k in ks]), ks[0].mask, cat([k.noise for k in ks]))
    return Cond(cat([c.caption for c in conds]), cat([c.instruction for c in conds]), cat([c.source for c in conds]),
                cat([c.task for c in conds]), known)


def scatter_rows(values: Tensor, rows: Tensor) -> Tensor:
    """values for the True rows of `rows` placed in zeros for all of them."""
    out = values.new_zeros(len(rows), *values.shape[1:])
    out[rows] = values
    return out


@contextmanager
def motion_bypassed(unet: nn.Module) -> Iterator[None]:
    """Make every motion module the identity for the duration (paper: the edit teacher treats frames as a batch).

    AnimateDiffTransformer3D ends in `hidden + residual`, so skipping it leaves exactly the 2D UNet per frame.
    An instance attribute shadows the class `forward` without touching parameters or state_dict; any instance
    `forward` already there (accelerate hooks) is restored on exit.
    """
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    modules = [m for m in unet.modules() if isinstance(m, AnimateDiffTransformer3D)]
    saved = [m.__dict__.get("forward") for m in modules]
    try:
        for m in modules:
            m.forward = _skip_motion
        yield
    finally:
        for m, f in zip(modules, saved):
            del m.forward
            if f is not None:
                m.forward = f


def _skip_motion(hidden_states: Tensor, *args, **kwargs) -> Tensor:
    return hidden_states


class EveModel(nn.Module):
    """The composed model. Build with `EveModel.from_config(ModelConfig)` or from loaded parts."""

    def __init__(
        self,
        unet: nn.Module,
        controlnet: nn.Module,
        text: nn.Module,
        codec: nn.Module,
        schedule: NoiseSchedule,
        *,
        sparsectrl: nn.Module | None = None,
        num_frames: int = 8,
        resolution: int = 512,
        first_frame: str = "replace",
        controlnet_text: str = "instruction",
        controlnet_scale: float = 1.0,
        sparsectrl_scale: float = 1.0,
        batch_guidance: bool = True,
    ):
        super().__init__()
        if first_frame not in known_frames.MECHANISMS:
            raise ValueError(f"unknown first_frame mechanism {first_frame!r} ({', '.join(known_frames.MECHANISMS)})")
        if first_frame == "sparsectrl" and sparsectrl is None:
            raise EveError("model.first_frame is 'sparsectrl' but model.sparsectrl names no weights")
        self.unet = unet
        self.controlnet = controlnet
        self.sparsectrl = sparsectrl
        self.text = text
        self.codec = codec
        self.schedule = schedule
        self.num_frames = num_frames
        self.resolution = resolution
        self.first_frame = first_frame
        self.controlnet_text = controlnet_text
        self.controlnet_scale = controlnet_scale
        self.sparsectrl_scale = sparsectrl_scale
        # classifier-free guidance's branches (2 or 3) as one batch through the networks instead of one call each:
        # the same sum, in fewer and larger calls, at 2-3x the activation memory of one call (model.batch_guidance;
        # tests/test_composed.py bounds the difference). It applies to FDD's teacher calls too.
        self.batch_guidance = batch_guidance
        self._null: dict[bool, Tensor] = {}  # the empty prompt's embedding, by whether the text LoRA reads it
        self.evaluations = 0  # network evaluations so far (a batch of guidance branches counts each branch)
        self._active: tuple[str, ...] | None = None  # the LoRA adapters switched on now (None: not known)
        # False: the motion modules are off in every role, so frames are images (LoRA alignment trains and image
        # edits run this way: paper §4.4 "no temporal layers"); see `per_frame`.
        self.temporal = True

    # ------------------------------------------------------------------ building

    @classmethod
    def from_config(cls, cfg) -> EveModel:
        """Load every component named by a ModelConfig and compose them (frozen, eval mode)."""
        from eve.models.build import load_parts

        model = cls(**load_parts(cfg))
        if getattr(cfg, "lora", None):
            model.attach_user_lora(cfg.lora)
        return model

    def add_lora(self, rank: int, alpha: float | None, targets: list[str], adapter: str | None = None) -> None:
        """A zero-initialised trainable LoRA: the student's θ_align, or (adapter=FAKE_*) a fake score."""
        if adapter is None:
            add_lora(self.unet, rank, alpha, targets)
        else:
            add_lora(self.unet, rank, alpha, targets, adapter=adapter)
        self._active = None

    def attach_user_lora(self, path) -> dict:
        """Attach a user's style or subject LoRA θ_LoRA (any format eve reads, UNet layers only), frozen, beside the
        student's: on for the LoRA teacher, plug-and-play and the student (paper §4.4). Returns its metadata."""
        from eve.models.lora import USER, load_lora

        meta = load_lora(self.unet, path, adapter=USER)
        self._active = None
        return meta

    def detach_user_lora(self) -> None:
        from eve.models.lora import USER, remove_lora

        remove_lora(self.unet, adapter=USER)
        self._active = None

    @property
    def has_user_lora(self) -> bool:
        from eve.models.lora import USER

        return has_lora(self.unet, USER)

    def load_lora(self, path) -> dict:
        """Attach a LoRA file of any format eve reads (eve/models/lora.py) as the student's θ_align: on for the
        student role only, text-encoder layers included. Returns the file's metadata."""
        from eve.models.lora import load_lora

        meta = load_lora(self.unet, path, text_encoder=self.text.encoder)
        self.text.forget()
        self._active = None
        return meta

    def unload_lora(self) -> None:
        """Drop the student LoRA (UNet and text encoder), if any: back to plug-and-play."""
        from eve.models.lora import remove_lora

        remove_lora(self.unet, self.text.encoder)
        self.text.forget()
        self._active = None

    # The first parameter's dtype and device, read directly: diffusers' ModelMixin.dtype / .device walk every
    # submodule for casting or offloading hooks on each call (6.7 ms a call on the full-size SD-1.5 + AnimateDiff
    # UNet's 1,348 modules; an FDD step makes about 150 calls); eve attaches no such hooks.
    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_channels(self) -> int:
        return self.unet.config.in_channels

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must be multiples of this (codec downsampling x UNet downsampling)."""
        return self.codec.scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def task_conditioned(self) -> bool:
        return bool(getattr(self.controlnet.config, "num_class_embeds", None))

    # ------------------------------------------------------------------ codec and text

    def encode_text(self, texts: list[str], role: Role = Role.EDIT_TEACHER) -> Tensor:
        """Token embeddings as `role` reads them: through the student's text-encoder LoRA only for the student."""
        return self.text(texts, lora=ROLE_SWITCHES[Role(role)].lora).to(self.dtype)

    def encode_video(self, video: Tensor) -> Tensor:
        """[B, F, 3, H, W] pixels in [-1, 1] -> [B, F, C, h, w] backbone samples."""
        return self.codec.encode(video.to(self.device, self.dtype)).float()

    def decode_video(self, latents: Tensor) -> Tensor:
        return self.codec.decode(latents.to(self.dtype)).float()

    # ------------------------------------------------------------------ the network

    def forward(self, xt: Tensor, t: Tensor, cond: Cond, role: Role = Role.STUDENT, switches: Switches | None = None,
                edit_rows: Tensor | None = None) -> Tensor:
        """Raw backbone output [B, F, C, h, w] for x_t [B, F, C, h, w] at timesteps t [B]. `edit_rows` ([B] bool),
        with the edit adapter switched on: the rows that get its residuals (the others get none, as with it off)."""
        sw = switches or ROLE_SWITCHES[Role(role)]
        self.evaluations += 1
        if Role(role) is Role.LORA_TEACHER and not self.has_user_lora:  # else silently the bare backbone
            raise EveError("the LoRA teacher needs a user LoRA: attach one (model.lora=PATH)")
        if not self.temporal:
            sw = replace(sw, motion=False)
        B, F, C, h, w = xt.shape
        t = torch.as_tensor(t, device=xt.device).long().reshape(-1).expand(B)
        known = cond.known if sw.known else None
        given = xt
        if known is not None and self.first_frame == "replace":
            xt = known_frames.replace_input(xt, t, known, self.schedule)
        x = xt.to(self.dtype)
        caption_bf = cond.caption.to(self.dtype).repeat_interleave(F, 0)  # [(B F), L, D], b-major like (b f)
        down, mid = None, None
        if sw.edit:
            down, mid = self._edit_residuals(x, t, cond, edit_rows)
        if known is not None and self.first_frame == "sparsectrl":
            sd, sm = known_frames.sparsectrl_residuals(self.sparsectrl, x, t, caption_bf, known, self.sparsectrl_scale)
            down = sd if down is None else [a + b for a, b in zip(down, sd)]
            mid = sm if mid is None else mid + sm
        with self._switched(sw):
            out = self.unet(
                x.permute(0, 2, 1, 3, 4),  # [B, C, F, h, w], diffusers' motion layout
                t,
                encoder_hidden_states=caption_bf,
                down_block_additional_residuals=down,
                mid_block_additional_residual=mid,
            ).sample
        out = out.permute(0, 2, 1, 3, 4).float()
        if known is not None and self.first_frame == "replace":
            out = known_frames.replace_output(out, given, t, known, self.schedule)
        return out

    def _edit_residuals(self, x: Tensor, t: Tensor, cond: Cond, rows: Tensor | None = None) -> tuple[list[Tensor], Tensor]:
        """ControlNet residuals, per frame (paper footnote 1: frames stacked independently as a batch); with `rows`,
        computed for those rows only and zero for the others (adding zero is adding nothing)."""
        if rows is not None and not bool(rows.all()):
            F = x.shape[1]
            pick = lambda v: None if v is None else v[rows.to(v.device)]  # noqa: E731 (task, source: any device)
            sub = Cond(pick(cond.caption), pick(cond.instruction), pick(cond.source), pick(cond.task))
            down, mid = self._edit_residuals(x[rows.to(x.device)], t[rows.to(t.device)], sub)
            per_frame = rows.to(x.device).repeat_interleave(F)
            return [scatter_rows(r, per_frame) for r in down], scatter_rows(mid, per_frame)
        if cond.source is None:
            raise ValueError("the edit adapter needs cond.source (the input frames)")
        B, F, C, h, w = x.shape
        text = cond.instruction if self.controlnet_text == "instruction" else cond.caption
        if text is None:
            raise ValueError("the edit adapter needs cond.instruction")
        scale = 2 ** (len(self.controlnet.config.conditioning_embedding_out_channels) - 1)
        image = (cond.source.flatten(0, 1).to(x.device, torch.float32) + 1) / 2  # [(B F), 3, H, W] in [0, 1]
        if image.shape[-2:] != (h * scale, w * scale):
            image = F_.interpolate(image, size=(h * scale, w * scale), mode="bilinear", antialias=True)
        labels = None
        if self.task_conditioned:
            if cond.task is None:
                raise EveError("this edit adapter was trained with task labels: give a task (--task)")
            labels = cond.task.to(x.device).repeat_interleave(F)
        return self.controlnet(
            x.flatten(0, 1),
            t.repeat_interleave(F),
            encoder_hidden_states=text.to(self.dtype).repeat_interleave(F, 0),
            controlnet_cond=image.to(self.dtype),
            conditioning_scale=self.controlnet_scale,
            class_labels=labels,
            return_dict=False,
        )

    @contextmanager
    def _switched(self, sw: Switches) -> Iterator[None]:
        with ExitStack() as stack:
            if not sw.motion:
                stack.enter_context(motion_bypassed(self.unet))
            self._switch_adapters(sw)
            yield

    def _switch_adapters(self, sw: Switches) -> None:
        """Switch on exactly the LoRA adapters the role uses (student θ_align, user θ_LoRA), if attached."""
        from eve.models.lora import ADAPTER, FAKE_EDIT, FAKE_VIDEO, USER

        attached = [a for a in (ADAPTER, USER, FAKE_EDIT, FAKE_VIDEO) if has_lora(self.unet, a)]
        wanted = ((ADAPTER, sw.lora), (USER, sw.user), (FAKE_EDIT, sw.fake == FAKE_EDIT),
                  (FAKE_VIDEO, sw.fake == FAKE_VIDEO))
        active = tuple(a for a, on in wanted if on and a in attached)
        if sw.fake is not None and sw.fake not in attached:  # else silently the teacher itself
            raise EveError(f"the fake score {sw.fake!r} is not attached (fdd.score=dmd adds it)")
        if not attached or self._active == active:
            return
        # peft's switches also flip requires_grad on the LoRA weights; a teacher call between the student's forward
        # and backward would then silently drop the student's gradient. Keep the flags.
        flags = [(p, p.requires_grad) for p in lora_parameters(self.unet, None)]
        if active:
            self.unet.enable_adapters()
            self.unet.set_adapters(list(active))
        else:
            self.unet.disable_adapters()
        for p, flag in flags:
            p.requires_grad_(flag)
        self._active = active

    @contextmanager
    def per_frame(self) -> Iterator[None]:
        """Every role with its motion modules off for the duration: frames are edited as images."""
        before, self.temporal = self.temporal, False
        try:
            yield
        finally:
            self.temporal = before

    def predict_x0(self, xt: Tensor, t: Tensor, cond: Cond, role: Role = Role.STUDENT, switches: Switches | None = None,
                   edit_rows: Tensor | None = None) -> Tensor:
        return self.schedule.x0_from_output(xt, self(xt, t, cond, role, switches, edit_rows), t)

    def guided_x0(
        self, xt: Tensor, t: Tensor, cond: Cond, role: Role, *, text_scale: float = 1.0, image_scale: float = 1.0
    ) -> Tensor:
        """x0 with classifier-free guidance. Null text is the empty string's embedding for caption and
        instruction; the null image turns the edit adapter off. Scales of 1 cost one forward."""
        sw = ROLE_SWITCHES[Role(role)]
        use_image = sw.edit and image_scale != 1.0
        if text_scale == 1.0 and not use_image:
            return self.predict_x0(xt, t, cond, role)
        null = self.null_text(role).expand_as(cond.caption)
        no_text = replace(cond, caption=null, instruction=None if cond.instruction is None else null)
        if not use_image:
            uncond, full = self._branches(xt, t, [(no_text, sw.edit), (cond, sw.edit)], role)
            return cfg_combine(uncond, full, text_scale)
        uncond, image_only, full = self._branches(xt, t, [(no_text, False), (no_text, True), (cond, True)], role)
        return dual_cfg(uncond, image_only, full, text_scale, image_scale)

    def _branches(self, xt: Tensor, t: Tensor, branches: list[tuple[Cond, bool]], role: Role) -> list[Tensor]:
        """x0 of each (conditioning, edit adapter on) branch of one guided prediction: one call each, or with
        `batch_guidance` all in one batch (the edit adapter's residuals only for the rows that have it on)."""
        sw = ROLE_SWITCHES[Role(role)]
        if not self.batch_guidance:
            return [self.predict_x0(xt, t, c, role, None if edit == sw.edit else replace(sw, edit=edit))
                    for c, edit in branches]
        B, n = xt.shape[0], len(branches)
        t = torch.as_tensor(t, device=xt.device).long().reshape(-1).expand(B)
        edits = [edit for _, edit in branches]
        self.evaluations += n - 1  # one call, n evaluations
        rows = torch.tensor(edits, device=xt.device).repeat_interleave(B)
        out = self.predict_x0(xt.repeat(n, 1, 1, 1, 1), t.repeat(n), cat_conds([c for c, _ in branches]), role,
                              replace(sw, edit=any(edits)), edit_rows=rows if any(edits) else None)
        return list(out.chunk(n))

    def null_text(self, role: Role) -> Tensor:
        """The empty prompt's embedding [1, L, D] as `role` reads it, encoded once (again under a trained text LoRA,
        whose weights change)."""
        lora = ROLE_SWITCHES[Role(role)].lora
        if lora and self.text.has_lora:
            return self.encode_text([""], role)
        cached = self._null.get(lora)
        if cached is None or cached.device != self.device or cached.dtype != self.dtype:
            with torch.no_grad():
                self._null[lora] = self.encode_text([""], role)
        return self._null[lora]

    def denoiser(self, cond: Cond, role: Role, *, text_scale: float = 1.0, image_scale: float = 1.0):
        """A Denoiser callable (x_t, t) -> x0 for eve.diffusion.sample."""
        return lambda xt, t: self.guided_x0(xt, t, cond, role, text_scale=text_scale, image_scale=image_scale)
