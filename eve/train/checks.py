"""The training run's config checks: everything checkable before any weight loads, so a bad run fails in seconds
with one line. Used by `train_fdd.py` and by `python -m eve.train.real_samples` (which samples for that run)."""

from __future__ import annotations

from pathlib import Path

from eve.errors import EveError
from eve.train.validation import resolve
from eve.utils.files import check_writable


def validate(cfg) -> None:
    """Everything checkable before weights load, so a bad run fails in seconds."""
    f, r = cfg.fdd, cfg.run
    if not cfg.data.manifest:
        raise EveError("data.manifest is not set")
    if f.k < 1:
        raise EveError(f"fdd.k must be >= 1, got {f.k}")
    if not 0 <= f.sds_t_min < f.sds_t_max <= 1:
        raise EveError(f"fdd.sds_t_min/sds_t_max must satisfy 0 <= min < max <= 1, got {f.sds_t_min}, {f.sds_t_max}")
    for name in ("edit_sds_t_range", "video_sds_t_range"):
        rng = getattr(f, name)
        if rng is not None and not (len(rng) == 2 and 0 <= rng[0] < rng[1] <= 1):
            raise EveError(f"fdd.{name} must be null or [min, max] with 0 <= min < max <= 1, got {list(rng)}")
    if not 0 <= f.ema_decay < 1:
        raise EveError(f"fdd.ema_decay must be in [0, 1) (0 = off), got {f.ema_decay}")
    d = cfg.disc
    if not 0 <= d.translate_fraction <= 0.5:
        raise EveError(f"disc.translate_fraction must be in [0, 0.5], got {d.translate_fraction}")
    if not 0 <= d.cutout_fraction < 1:
        raise EveError(f"disc.cutout_fraction must be in [0, 1), got {d.cutout_fraction}")
    if f.mode == "lora_align" and not cfg.model.lora:
        raise EveError("fdd.mode=lora_align aligns a user's LoRA with the edit adapter: name it with model.lora=PATH "
                       "(or lora=PATH)")
    if f.mode == "video" and cfg.model.lora:
        raise EveError(f"model.lora={cfg.model.lora} is set, but fdd.mode=video: the video teacher never sees that "
                       "LoRA, so its SDS would pull the student away from it; align it with fdd.mode=lora_align")
    if f.mode == "video" and f.use_adversarial and not f.disc_first_frame and cfg.model.num_frames < 2:
        raise EveError(f"model.num_frames={cfg.model.num_frames} leaves D_e no frame besides the known frame 0 "
                       "(set fdd.disc_first_frame=true or use more frames)")
    if not (f.use_sds or f.use_adversarial):
        raise EveError("fdd.use_sds and fdd.use_adversarial are both false: nothing to train")
    o = cfg.optim
    used = ("lr", "betas") + (("d_lr", "d_betas") if f.use_adversarial else ())  # the critic's only when trained
    for name in ("lr", "d_lr"):
        if name in used and not getattr(o, name) > 0:
            raise EveError(f"optim.{name} must be > 0, got {getattr(o, name)}")
    for name in ("betas", "d_betas"):
        betas = getattr(o, name)
        if name in used and (len(betas) != 2 or not all(0 <= b < 1 for b in betas)):
            raise EveError(f"optim.{name} must be two numbers in [0, 1), got {list(betas)}")
    if not (o.weight_decay >= 0 and o.grad_clip >= 0):  # NaN too
        raise EveError(f"optim.weight_decay and optim.grad_clip must be >= 0, got {o.weight_decay}, {o.grad_clip}")
    if f.score == "dmd" and not (f.fake_updates >= 1 and f.fake_lr > 0 and (f.fake_rank is None or f.fake_rank >= 1)):
        raise EveError(f"fdd.score=dmd needs fdd.fake_updates >= 1, fdd.fake_lr > 0 and fdd.fake_rank null or >= 1, "
                       f"got {f.fake_updates}, {f.fake_lr}, {f.fake_rank}")
    if f.score == "dmd" and r.mixed_precision == "fp16":
        raise EveError("fdd.score=dmd trains its fake scores outside accelerate's fp16 loss scaling: use "
                       "run.mixed_precision=bf16 or no")
    if r.eval_every < 0:
        raise EveError(f"run.eval_every must be >= 0 (0: no validation), got {r.eval_every}")
    if r.eval_every and not r.validation:
        raise EveError(f"run.eval_every={r.eval_every} asks for validation, but run.validation names no scorer "
                       "(module:attr; the shapes world's: eve.worlds.shapes.validation:scorer)")
    if r.validation:
        resolve(r.validation)  # imports it: a wrong name fails here, before any weight loads
    check_writable(Path(r.out_dir), "run.out_dir")

    if r.batch_size % r.micro_batch:
        raise EveError(f"run.batch_size={r.batch_size} is not a multiple of run.micro_batch={r.micro_batch}")
    if not 0 <= f.disc_warmup_steps <= f.sds_only_steps:
        raise EveError(f"fdd.disc_warmup_steps must be in [0, fdd.sds_only_steps={f.sds_only_steps}], got {f.disc_warmup_steps}")
    if cfg.model.dino is None and f.use_adversarial:
        raise EveError("model.dino names no feature network, which the discriminators need (or set fdd.use_adversarial=false)")
