"""Factorized Diffusion Distillation: the generator and discriminator objectives (paper §3.2-3.3).

One generator forward (FddGenerator) is, for a micro-batch of clips:

1. the student generates an edit in k steps from pure noise, gradients through all of them, at K-bin steps
   (one random step per bin, paper §3.3) or fixed evenly spaced ones (the "w/o K-bin" ablation);
2. SDS from each frozen teacher, one shared (t, eps): the edit teacher frame by frame on (input frame,
   instruction[, task]), the video teacher on the clip conditioned on f1 (the edit teacher's edit of frame 0);
   per-teacher t ranges draw separate t's; fdd.sds_noise_control swaps each SDS gradient for noise of its RMS;
3. after the SDS-only phase, hinge generator losses from D_e (input frame, instruction, output frame; frames
   1..F-1, frame 0 being the known f1) and D_v (clip, caption), on decoded frames;
4. L_G = alpha (w L_G-edit + lam L_SDS-edit) + beta (w L_G-video + lam L_SDS-video), w = fdd.adv_weight (paper: 1).

LoRA alignment (fdd.mode=lora_align, paper §4.4) is the same objective on single images (F = 1) with the LoRA
teacher [θ, θ_LoRA] as the second teacher (caption only, no known frame) and an image discriminator with text
conditioning as the second critic; the model runs with its motion modules off (EveModel.temporal = False), and
D_e sees frame 0, which nothing fixes there. Its logs name the second teacher "lora" instead of "video".

FddDiscriminator is the critic turn: hinge losses on the teachers' samples (real) against the student's (fake),
plus R1 on real samples' head inputs. Both are nn.Modules whose single forward returns a loss, so accelerate can
wrap them for DDP/FSDP; the discriminators are held outside the generator's parameter tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import evenly_spaced_timesteps, kbin_timesteps
from eve.losses import hinge_d_loss, hinge_g_loss, r1_penalty, rms_matched_noise, sds_loss, sds_surrogate, sds_weight
from eve.models.composed import Cond, EveModel, Role, fake_switches
from eve.models.discriminator import EditDiscriminator, VideoDiscriminator
from eve.models.known import Known, first_frame
from eve.models.lora import FAKE_EDIT, FAKE_VIDEO
from eve.train.augment import Augment


@dataclass
class Batch:
    """A micro-batch ready for both turns. Latents are [B, F, C, h, w]; pixels [B, F, 3, H, W] in [-1, 1]."""

    frames: Tensor  # input clip (pixels); in LoRA alignment the LoRA teacher's sample of the input caption
    caption: Tensor  # [B, L, D] output caption tokens
    instruction: Tensor  # [B, L, D]
    caption_pooled: Tensor  # [B, D] for D_v
    instruction_pooled: Tensor  # [B, D] for D_e
    task: Tensor  # [B]
    f1: Tensor | None  # [B, C, h, w] edited first frame (edit teacher); None in LoRA alignment
    real_edit: Tensor | None = None  # edit teacher's per-frame edits (latents), D_e's real data
    real_video: Tensor | None = None  # second teacher's sample (latents), D_v's real data: the video teacher's
    # clip, or in LoRA alignment the LoRA teacher's image for the output caption

    def latent_size(self, model: EveModel) -> tuple[int, int]:
        """(h, w) of the latents the model's codec gives for these frames."""
        return tuple(n // model.codec.scale_factor for n in self.frames.shape[-2:])


def student_timesteps(k: int, T: int, mode: str, pin_first: bool, generator: torch.Generator) -> Tensor:
    if mode == "kbin":
        return kbin_timesteps(k, T, generator=generator, pin_first=pin_first)
    if mode == "fixed":
        return evenly_spaced_timesteps(k, T)
    raise ValueError(f"unknown student timestep mode {mode!r} (kbin, fixed)")


def student_generate(model: EveModel, cond: Cond, noise: Tensor, timesteps: Tensor, checkpointing: bool) -> Tensor:
    """x0 after len(timesteps) DDIM steps of the student from `noise` (eve's one sampler), keeping the graph through
    every step; with `checkpointing` each step is recomputed in backward."""
    def denoiser(x: Tensor, t: Tensor) -> Tensor:
        if checkpointing:
            return torch.utils.checkpoint.checkpoint(model.predict_x0, x, t, cond, Role.STUDENT, use_reentrant=False)
        return model.predict_x0(x, t, cond, Role.STUDENT)

    return sample(denoiser, noise, timesteps, model.schedule)


def t_range(T: int, lo: float, hi: float) -> tuple[int, int]:
    """Integer SDS timestep bounds [int(lo T), int(hi T)] clamped to [0, T-1] (a range ending at 1.0 ends at T-1)."""
    top = min(int(hi * T), T - 1)
    return min(int(lo * T), top), top


def sds_timesteps(B: int, T: int, fdd, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(t for the edit teacher, t for the video teacher), each [B], uniform over the integers of their ranges.

    The paper draws one t for both teachers (§3.2): that is what happens, with the same generator draws as always,
    unless fdd.edit_sds_t_range or fdd.video_sds_t_range is set; then each teacher gets its own draw from its own
    range (the shared fdd.sds_t_min/sds_t_max where its override is null)."""
    shared = (fdd.sds_t_min, fdd.sds_t_max)
    if fdd.edit_sds_t_range is None and fdd.video_sds_t_range is None:
        lo, hi = t_range(T, *shared)
        t = torch.randint(lo, hi + 1, (B,), generator=generator)
        return t, t
    draws = []
    for override in (fdd.edit_sds_t_range, fdd.video_sds_t_range):
        lo, hi = t_range(T, *(override if override is not None else shared))
        draws.append(torch.randint(lo, hi + 1, (B,), generator=generator))
    return draws[0], draws[1]


def edit_pairs(out: Tensor, src: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
    """[B, F, 3, H, W] x2 -> ([(B f), 3, H, W], [(B f), 3, H, W]) for the chosen frames."""
    return out[:, frames].flatten(0, 1), src[:, frames].flatten(0, 1)


def augment_pairs(out: Tensor, src: Tensor, generator: torch.Generator,
                  augment: Augment = Augment()) -> tuple[Tensor, Tensor]:
    """Augment (output, input) pairs with one set of parameters per pair."""
    pair = augment(torch.stack([out, src], 1), generator)
    return pair[:, 0], pair[:, 1]


def disc_frame_choice(F: int, n: int | None, first_frame: bool, generator: torch.Generator) -> list[int]:
    """Frames of each clip fed to D_e (OQ-21): all allowed ones, or a random subset of n of them. Frame 0 is allowed
    only with first_frame: it is the known f1 in both the student's clip and the teacher's, so fake == real there."""
    allowed = list(range(0 if first_frame else 1, F))
    if not n or n >= len(allowed):
        return allowed
    return sorted(allowed[i] for i in torch.randperm(len(allowed), generator=generator)[:n].tolist())


def rms(x: Tensor) -> float:
    return float(x.detach().float().pow(2).mean().sqrt())


def second_teacher(fdd) -> tuple[Role, str, float]:
    """(role, log name, text guidance) of the teacher beside the edit teacher: the video teacher, or the LoRA teacher
    (§4.4)."""
    if fdd.mode == "lora_align":
        return Role.LORA_TEACHER, "lora", fdd.lora_guidance
    return Role.VIDEO_TEACHER, "video", fdd.video_guidance


class FddGenerator(nn.Module):
    """The student's turn. Only the LoRA inside `model` is trainable."""

    def __init__(self, model: EveModel, fdd, discriminators: tuple[EditDiscriminator, VideoDiscriminator] | None,
                 generator: torch.Generator, augment: Augment = Augment()):
        super().__init__()
        self.model = model
        self.fdd = fdd
        self.second, self.name, self.second_guidance = second_teacher(fdd)
        self.known_first = fdd.mode == "video"  # frame 0 is the edited f1, given to the video adapter
        self._discs = discriminators  # a tuple attribute: not registered, so not part of this module's parameters
        self.gen = generator
        self.augment = augment  # used when fdd.augment

    def forward(self, b: Batch, adversarial: bool) -> dict:
        x0, known, ts = self.generate(b)
        out = self.terms(x0, b, known, adversarial)
        out["logs"] = {"t_student": ts.tolist()} | out["logs"]
        return out | {"known": known}

    def generate(self, b: Batch) -> tuple[Tensor, Known | None, Tensor]:
        """Step 1, the student: k steps from noise with gradients through all of them (paper §3.2, K-bin §3.3).
        Returns (x0 [B, F, C, h, w], the known first frame or None, the student's timesteps)."""
        m, f = self.model, self.fdd
        B, F = b.frames.shape[:2]
        noise = torch.randn((B, F, m.latent_channels, *b.latent_size(m)), generator=self.gen).to(b.frames.device)
        known = self.known(b, noise)
        cond = Cond(b.caption, b.instruction, b.frames, b.task, known)
        ts = student_timesteps(f.k, m.schedule.num_train_timesteps, f.timesteps, f.pin_first, self.gen)
        return student_generate(m, cond, noise, ts, f.grad_checkpointing), known, ts

    def known(self, b: Batch, noise: Tensor) -> Known | None:
        """Frame 0 is f1, given to the video adapter (video mode); nothing is known in LoRA alignment."""
        if not self.known_first:
            return None
        F = noise.shape[1]
        mask = torch.zeros(F, dtype=torch.bool)
        mask[0] = True
        return Known(first_frame(b.f1, F, noise).latents, mask, noise)

    def terms(self, x0: Tensor, b: Batch, known: Known | None, adversarial: bool) -> dict:
        """Steps 2-4 on any x0 with a graph (the student's, or free latents: bench/world/sds_probe.py): the teachers' score
        terms and, with `adversarial`, the hinge generator terms. Returns {"loss", "fake", "logs"}."""
        f = self.fdd
        F = x0.shape[1]
        logs: dict[str, float] = {}
        loss = x0.new_zeros(())
        free = torch.ones(F, device=x0.device, dtype=x0.dtype) if known is None else (~known.mask).to(x0)
        free = free.view(1, F, 1, 1, 1)  # frames the student actually generates
        if f.use_sds:
            sds_e, sds_v, score_logs = self.score_terms(x0, b, known, free)
            loss = loss + f.alpha * f.lam * sds_e + f.beta * f.lam * sds_v
            logs |= score_logs
        fake = None
        if adversarial:
            g_edit, g_video, fake = self.adversarial_terms(x0, b)
            loss = loss + f.adv_weight * (f.alpha * g_edit + f.beta * g_video)
            logs |= {"g_edit": float(g_edit.detach()), f"g_{self.name}": float(g_video.detach())}
        logs["loss_g"] = float(loss.detach())
        return {"loss": loss, "x0": x0.detach(), "fake": None if fake is None else fake.detach(), "logs": logs}

    def score_terms(self, x0: Tensor, b: Batch, known: Known | None, free: Tensor) -> tuple[Tensor, Tensor, dict]:
        """Step 2: each teacher's score term, one shared (t, eps) (paper §3.2; separate t only with per-teacher
        ranges). fdd.score=sds: g = c(t)(eps_teacher - eps); dmd: g = c(t)(eps_teacher - eps_fake)."""
        m, f = self.model, self.fdd
        B, dev = x0.shape[0], x0.device
        T = m.schedule.num_train_timesteps
        t_e, t_v = sds_timesteps(B, T, f, self.gen)
        split = t_v is not t_e
        t_e = t_e.to(dev)
        t_v = t_v.to(dev) if split else t_e
        eps = torch.randn(x0.shape, generator=self.gen).to(dev)
        xt_e = m.schedule.add_noise(x0.detach(), eps, t_e)
        xt_v = m.schedule.add_noise(x0.detach(), eps, t_v) if split else xt_e
        cond_e = Cond(b.caption, b.instruction, b.frames, b.task)
        cond_v = Cond(b.caption, known=None if known is None else Known(known.latents, known.mask, eps))
        with torch.no_grad():
            x0_e = m.guided_x0(xt_e, t_e, cond_e, Role.EDIT_TEACHER, text_scale=f.edit_guidance,
                               image_scale=f.edit_image_guidance)
            x0_v = m.guided_x0(xt_v, t_v, cond_v, self.second, text_scale=self.second_guidance)
            eps_e = m.schedule.eps_from_x0(xt_e, x0_e, t_e)
            eps_v = m.schedule.eps_from_x0(xt_v, x0_v, t_v)
            base_e = base_v = eps  # SDS: the noise drawn
            if f.score == "dmd":  # distribution matching: the fake scores' noise in its place
                base_e = m.schedule.eps_from_x0(
                    xt_e, m.predict_x0(xt_e, t_e, cond_e, Role.EDIT_TEACHER, fake_switches(Role.EDIT_TEACHER,
                                                                                           FAKE_EDIT)), t_e)
                base_v = m.schedule.eps_from_x0(
                    xt_v, m.predict_x0(xt_v, t_v, cond_v, self.second, fake_switches(self.second, FAKE_VIDEO)), t_v)
        sds_e, g_e = sds_loss(x0, eps_e, base_e, sds_weight(*m.schedule.coefficients(t_e, x0), f.sds_weighting), free)
        sds_v, g_v = sds_loss(x0, eps_v, base_v, sds_weight(*m.schedule.coefficients(t_v, x0), f.sds_weighting), free)
        logs = {"gnorm_sds_edit": rms(g_e), f"gnorm_sds_{self.name}": rms(g_v), "t_sds": t_e.float().mean().item()}
        if split:
            logs |= {"t_sds": torch.cat([t_e, t_v]).float().mean().item(),
                     "t_sds_edit": t_e.float().mean().item(), f"t_sds_{self.name}": t_v.float().mean().item()}
        if f.sds_noise_control:  # the control: same RMS, no direction (per teacher, this step)
            sds_e = sds_surrogate(x0, rms_matched_noise(g_e, free, self.gen))
            sds_v = sds_surrogate(x0, rms_matched_noise(g_v, free, self.gen))
        logs |= {"sds_edit": float(sds_e.detach()), f"sds_{self.name}": float(sds_v.detach())}
        return sds_e, sds_v, logs

    def adversarial_terms(self, x0: Tensor, b: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Step 3: hinge generator terms on decoded frames (paper §3.2, after the SDS-only phase). Returns (edit
        term, second term, the decoded frames)."""
        f = self.fdd
        d_e, d_v = self._discs
        fake = self.model.decode_video(x0)  # [B, F, 3, H, W], with grad
        idx = self.disc_frames(x0.shape[1])
        out, src = edit_pairs(fake, b.frames, idx)
        video = fake
        if f.augment:
            out, src = augment_pairs(out, src, self.gen, self.augment)
            video = self.augment(fake, self.gen)
        logit_e = d_e(out, src, b.instruction_pooled.repeat_interleave(len(idx), 0))
        logit_v = d_v(video, b.caption_pooled)
        return hinge_g_loss(logit_e, f.gen_loss), hinge_g_loss(logit_v, f.gen_loss), fake

    def disc_frames(self, F: int) -> list[int]:
        """Frames of each clip fed to D_e in both turns (OQ-21; fdd.disc_frames, fdd.disc_first_frame; frame 0 is
        only known in the video case)."""
        return disc_frame_choice(F, self.fdd.disc_frames, self.fdd.disc_first_frame or not self.known_first, self.gen)


class FddDiscriminator(nn.Module):
    """The critic turn: both discriminators' hinge losses and R1 (paper §3.2; ADD §3.2)."""

    def __init__(self, edit: EditDiscriminator, video: VideoDiscriminator, fdd, generator: torch.Generator,
                 augment: Augment = Augment()):
        super().__init__()
        self.edit, self.video = edit, video
        self.fdd = fdd
        self.name = second_teacher(fdd)[1]
        self.gen = generator
        self.augment = augment  # used when fdd.augment

    def forward(self, fake: Tensor, real_edit: Tensor, real_video: Tensor, b: Batch, frames: list[int],
                fake_video: Tensor | None = None) -> dict:
        """fake, real_edit, real_video: decoded pixels [B, F, 3, H, W] (no grad into the student). fake_video, when
        given, is D_v's fake instead of `fake` (bench/world/disc_probe.py's teacher-against-teacher probe)."""
        f = self.fdd
        text_e = b.instruction_pooled.repeat_interleave(len(frames), 0)
        fake_out, fake_src = edit_pairs(fake, b.frames, frames)
        real_out, real_src = edit_pairs(real_edit, b.frames, frames)
        fake_v, real_v = (fake if fake_video is None else fake_video), real_video
        if f.augment:
            fake_out, fake_src = augment_pairs(fake_out, fake_src, self.gen, self.augment)
            real_out, real_src = augment_pairs(real_out, real_src, self.gen, self.augment)
            fake_v, real_v = self.augment(fake_v, self.gen), self.augment(real_v, self.gen)
        r1 = f.r1_gamma > 0
        feats_e = self._leaf_features(real_out) if r1 else None
        feats_v = self._leaf_features(real_v.flatten(0, 1)) if r1 else None
        le_real = self.edit(real_out, real_src, text_e, feats=feats_e)
        le_fake = self.edit(fake_out, fake_src, text_e)
        lv_real = self.video(real_v, b.caption_pooled, feats=feats_v)
        lv_fake = self.video(fake_v, b.caption_pooled)
        d_edit, d_video = hinge_d_loss(le_real, le_fake), hinge_d_loss(lv_real, lv_fake)
        loss = f.alpha * d_edit + f.beta * d_video
        n = self.name
        logs = {
            "d_edit": float(d_edit.detach()), f"d_{n}": float(d_video.detach()),
            "logit_edit_real": float(le_real.detach().mean()), "logit_edit_fake": float(le_fake.detach().mean()),
            f"logit_{n}_real": float(lv_real.detach().mean()), f"logit_{n}_fake": float(lv_fake.detach().mean()),
            "sign_edit_real": float((le_real > 0).float().mean()), f"sign_{n}_fake": float((lv_fake > 0).float().mean()),
        }
        if r1:
            penalty = f.alpha * r1_penalty(le_real, [t for t, _ in feats_e]) + f.beta * r1_penalty(
                lv_real, [t for t, _ in feats_v])
            loss = loss + f.r1_gamma / 2 * penalty
            logs["r1"] = float(penalty.detach())
        logs["loss_d"] = float(loss.detach())
        return {"loss": loss, "logs": logs}

    def _leaf_features(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Frozen features of real images as leaves that require grad: R1 differentiates the heads w.r.t. them."""
        with torch.no_grad():
            feats = self.edit.features(images)
        return [(t.detach().requires_grad_(True), c.detach()) for t, c in feats]


class FakeScoreStep(nn.Module):
    """The fake scores' turn (fdd.score=dmd; DMD, Yin et al. 2024): each fake LoRA learns to denoise the student's
    outputs (detached) as its teacher's configuration sees them, with the backbone's own loss in its own
    parametrisation, at t drawn as the score terms draw theirs. Unguided, as DMD's fake score. Frames the student
    does not generate (the known f1) are left out of the loss."""

    def __init__(self, model: EveModel, fdd, generator: torch.Generator):
        super().__init__()
        self.model = model
        self.fdd = fdd
        self.second, self.name, _ = second_teacher(fdd)
        self.gen = generator

    def forward(self, x0: Tensor, b: Batch, known: Known | None) -> dict:
        m, f = self.model, self.fdd
        B, F = x0.shape[:2]
        x0 = x0.detach()
        t_e, t_v = (t.to(x0.device) for t in sds_timesteps(B, m.schedule.num_train_timesteps, f, self.gen))
        eps = torch.randn(x0.shape, generator=self.gen).to(x0.device)
        free = torch.ones(F, device=x0.device) if known is None else (~known.mask).to(x0)
        free = free.view(1, F, 1, 1, 1).expand_as(x0)
        cond_e = Cond(b.caption, b.instruction, b.frames, b.task)
        cond_v = Cond(b.caption, known=None if known is None else Known(known.latents, known.mask, eps))
        losses = []
        for t, cond, role, adapter in ((t_e, cond_e, Role.EDIT_TEACHER, FAKE_EDIT),
                                       (t_v, cond_v, self.second, FAKE_VIDEO)):
            xt = m.schedule.add_noise(x0, eps, t)
            out = m(xt, t, cond, role, fake_switches(role, adapter))
            err = (out - m.schedule.output_from(x0, eps, t)).pow(2) * free
            losses.append(err.sum() / free.sum())
        loss = f.alpha * losses[0] + f.beta * losses[1]
        return {"loss": loss, "logs": {"fake_edit": float(losses[0].detach()),
                                       f"fake_{self.name}": float(losses[1].detach())}}
