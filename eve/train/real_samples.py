"""The teachers' samples each data point needs (paper §3.2 and §4; paper-notes §1.6, OQ-8, OQ-9):

* edit: the edit teacher's per-frame DDIM edit of every input frame, from noise. Frame 0 of it is f1, the edited
  first frame that conditions the video adapter everywhere (student, video-teacher SDS, video real sample); all of
  it is D_e's "real" (input frame, instruction, output frame) data.
* video: the video teacher's DDIM clip from noise for the caption, conditioned on f1; D_v's "real" data.

LoRA alignment (fdd.mode=lora_align, paper §4.4) has no images: per data point, `lora_align_samples` gives the input
image (the LoRA teacher's sample of the input caption: "we generate the input images using the LoRA adapter"), the
edit teacher's edit of it (D_e's real data) and the LoRA teacher's sample of the output caption (the second
critic's real data).

All are latents [F, C, h, w]. They are either cached per data point (safetensors files keyed by the data point
and a fingerprint of the teachers and sampling settings, so a changed teacher invalidates them) or generated
online every iteration. `python -m eve.train.real_samples --config CFG.yaml` fills the cache ahead of training.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import ddim_timesteps
from eve.models.composed import Cond, EveModel, Role
from eve.models.known import first_frame
from eve.models.lora import atomic_save, lora_fingerprint
from eve.utils.files import weights_fingerprint

logger = logging.getLogger(__name__)


@torch.no_grad()
def teacher_samples(
    model: EveModel,
    frames: Tensor,
    caption: Tensor,
    instruction: Tensor,
    task: Tensor,
    *,
    steps: int,
    spacing: str,
    edit_guidance: float,
    edit_image_guidance: float,
    video_guidance: float,
    generator: torch.Generator | list[torch.Generator],
    video: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """(edit [B, F, C, h, w], video [B, F, C, h, w] or None) for input frames [B, F, 3, H, W].

    `generator` may be one per row, so that a row's samples do not depend on what it is batched with."""
    B, F = frames.shape[:2]
    shape = (F, model.latent_channels, frames.shape[-2] // model.codec.scale_factor,
             frames.shape[-1] // model.codec.scale_factor)

    def noise() -> Tensor:
        return _noise(B, shape, generator, model.device)

    ts = ddim_timesteps(steps, model.schedule.num_train_timesteps, spacing)
    cond = Cond(caption, instruction, frames.to(model.device), task.to(model.device))
    den = model.denoiser(cond, Role.EDIT_TEACHER, text_scale=edit_guidance, image_scale=edit_image_guidance)
    edit = sample(den, noise(), ts, model.schedule)
    if not video:
        return edit, None
    known = first_frame(edit[:, 0], F, noise())
    den = model.denoiser(Cond(caption, known=known), Role.VIDEO_TEACHER, text_scale=video_guidance)
    return edit, sample(den, noise(), ts, model.schedule)


def _noise(B: int, shape: tuple, generator: torch.Generator | list[torch.Generator], device) -> Tensor:
    """[B, *shape] noise from one generator, or from one generator per row."""
    if isinstance(generator, list):
        return torch.stack([torch.randn(shape, generator=g) for g in generator]).to(device)
    return torch.randn((B, *shape), generator=generator).to(device)


@torch.no_grad()
def lora_align_samples(
    model: EveModel,
    input_caption: Tensor,
    caption: Tensor,
    instruction: Tensor,
    task: Tensor,
    *,
    size: int,
    steps: int,
    spacing: str,
    edit_guidance: float,
    edit_image_guidance: float,
    lora_guidance: float,
    generator: torch.Generator | list[torch.Generator],
    input_generator: torch.Generator | list[torch.Generator],
    real: bool = True,
) -> dict[str, Tensor]:
    """LoRA alignment's data point, latents [B, 1, C, h, w] each: "input" (the LoRA teacher's image for the input
    caption, from `input_generator`'s noise), and when `real`: "edit" (the edit teacher's edit of it) and "lora" (the
    LoRA teacher's image for the output caption); all with the motion modules off."""
    B = caption.shape[0]
    side = size // model.codec.scale_factor
    shape = (1, model.latent_channels, side, side)
    ts = ddim_timesteps(steps, model.schedule.num_train_timesteps, spacing)

    def draw(cond: Cond, role: Role, gen, **scales) -> Tensor:
        den = model.denoiser(cond, role, **scales)
        return sample(den, _noise(B, shape, gen, model.device), ts, model.schedule)

    with model.per_frame():
        inp = draw(Cond(input_caption), Role.LORA_TEACHER, input_generator, text_scale=lora_guidance)
        if not real:  # the SDS-only phase: the student's input is all it needs
            return {"input": inp}
        frames = model.decode_video(inp).clamp(-1, 1)
        edit = draw(Cond(caption, instruction, frames, task.to(model.device)), Role.EDIT_TEACHER, generator,
                    text_scale=edit_guidance, image_scale=edit_image_guidance)
        lora = draw(Cond(caption), Role.LORA_TEACHER, generator, text_scale=lora_guidance)
    return {"input": inp, "edit": edit, "lora": lora}


def input_generator(seed: int, input_caption: str) -> torch.Generator:
    """The noise of an input caption's image: every row of one input caption edits the same image, whichever batch,
    cache entry or process computes it."""
    return row_generator(seed, hashlib.sha1(json.dumps(["input", input_caption]).encode()).hexdigest())


def teacher_fingerprint(cfg) -> str:
    """Everything the teachers' samples depend on besides the data point."""
    m, f = cfg.model, cfg.fdd
    spec = {
        "weights": [weights_fingerprint(r) for r in (m.pretrained, m.controlnet, m.motion_adapter, m.sparsectrl)],
        "model": [m.codec, m.dtype, m.first_frame, m.controlnet_text, m.controlnet_scale, m.sparsectrl_scale,
                  m.prediction_type, m.zero_terminal_snr, m.num_frames],
        "data": [cfg.data.stride, cfg.data.size or m.resolution],
        "sampling": [f.real_steps, cfg.edit.timestep_spacing, f.edit_guidance, f.edit_image_guidance,
                     f.video_guidance, cfg.run.seed],
    }
    if f.mode == "lora_align":  # (only then: the video case's caches stay valid)
        spec["lora_align"] = [lora_fingerprint(m.lora), f.lora_guidance]
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def datapoint_key(row, fingerprint: str) -> str:
    if "video" not in row:  # LoRA alignment: the data point is its captions
        spec = [row["input_caption"], row["caption"], row["instruction"], row["task"], fingerprint]
        return hashlib.sha1(json.dumps(spec).encode()).hexdigest()
    p = Path(row["video"])
    stat = (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
    spec = [str(p), stat, int(row["start"]), row["caption"], row["instruction"], row["task"], fingerprint]
    return hashlib.sha1(json.dumps(spec, default=str).encode()).hexdigest()


class RealSampleCache:
    """One safetensors file per data point: {"edit": [F, C, h, w], "video": [F, C, h, w]}."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, Tensor] | None:
        p = self.path(key)
        return load_file(str(p)) if p.is_file() else None

    def put(self, key: str, tensors: dict[str, Tensor]) -> None:
        atomic_save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, self.path(key), {"format": "pt"})


def row_generator(seed: int, key: str) -> torch.Generator:
    """Per-data-point noise: a cached sample does not depend on batch composition or on who computed it."""
    return torch.Generator().manual_seed(seed * 1_000_003 + int(key[:12], 16) % 1_000_000_007)


def fill_cache(cfg, model: EveModel | None = None, progress: bool = True, batch: int = 32) -> int:
    """Compute every missing cache entry of cfg.data.manifest, `batch` rows at a time; returns how many."""
    from tqdm.auto import tqdm

    from eve.data.clips import CaptionRows, ClipDataset, collate
    from eve.data.manifest import read_manifest

    lora_align = cfg.fdd.mode == "lora_align"
    rows = read_manifest(cfg.data.manifest, kind="captions" if lora_align else "video")
    model = model or EveModel.from_config(cfg.model)
    cache = RealSampleCache(cache_dir(cfg))
    fp = teacher_fingerprint(cfg)
    size = cfg.data.size or cfg.model.resolution
    ds = CaptionRows(rows) if lora_align else ClipDataset(rows, cfg.model.num_frames, cfg.data.stride, size)
    keys = [datapoint_key(rows.iloc[i], fp) for i in range(len(rows))]
    todo = [i for i, k in enumerate(keys) if not cache.path(k).is_file()]
    bar = tqdm(total=len(todo), desc="teacher samples", disable=not progress)
    for start in range(0, len(todo), batch):
        ids = todo[start : start + batch]
        compute_and_store(cfg, model, cache, collate([ds[i] for i in ids]), [keys[i] for i in ids])
        bar.update(len(ids))
    bar.close()
    done = len(todo)
    return done


def compute_and_store(cfg, model: EveModel, cache: RealSampleCache, b: dict, keys: list[str]) -> list[dict]:
    """The cache entries of a collated batch whose row j is keyed keys[j], each computed with its own noise (so an
    entry does not depend on what it was batched with), stored, and returned in order."""
    out = compute_samples(cfg, model, b, [row_generator(cfg.run.seed, key) for key in keys])
    entries = [{k: v[j].cpu() for k, v in out.items()} for j in range(len(keys))]
    for key, entry in zip(keys, entries):
        cache.put(key, entry)
    return entries


def compute_samples(cfg, model: EveModel, b: dict, generator: torch.Generator | list[torch.Generator],
                    video: bool = True) -> dict[str, Tensor]:
    """The teachers' samples of a collated batch `b` (eve.data.clips.collate), as the cache stores them: {"edit",
    "video"} per clip (without "video" when `video` is False: the SDS phase needs only f1, from frame 0 alone), or
    LoRA alignment's {"input", "edit", "lora"} (only "input" when `video` is False)."""
    f = cfg.fdd
    common = dict(steps=f.real_steps, spacing=cfg.edit.timestep_spacing, edit_guidance=f.edit_guidance,
                  edit_image_guidance=f.edit_image_guidance, generator=generator)
    caption, instruction = model.encode_text(b["caption"]), model.encode_text(b["instruction"])
    if f.mode == "lora_align":
        # per-row generators (the cache's): the input from its caption's own noise; one generator (online): shared
        inputs = (generator if isinstance(generator, torch.Generator)
                  else [input_generator(cfg.run.seed, c) for c in b["input_caption"]])
        return lora_align_samples(model, model.encode_text(b["input_caption"]), caption, instruction, b["task"],
                                  size=cfg.data.size or cfg.model.resolution, lora_guidance=f.lora_guidance,
                                  input_generator=inputs, real=video, **common)
    frames = b["frames"].to(model.device)
    edit, clip = teacher_samples(model, frames if video else frames[:, :1], caption, instruction, b["task"],
                                 video_guidance=f.video_guidance, video=video, **common)
    return {"edit": edit} | ({"video": clip} if video else {})


def cache_dir(cfg) -> Path:
    return Path(cfg.fdd.cache_dir) if cfg.fdd.cache_dir else Path(cfg.run.out_dir) / "real_cache"


def main(argv: list[str] | None = None) -> int:
    from eve.config import EveConfig, load_config
    from eve.utils.cli import HelpFormatter, config_help, run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(
        prog="python -m eve.train.real_samples", formatter_class=HelpFormatter,
        description="Precompute the teachers' samples of an FDD dataset into the cache train_fdd.py reads (per data\n"
                    "point: the edit teacher's and the video teacher's samples, or in LoRA alignment the input\n"
                    "image, its edit and the LoRA teacher's image; keyed by the teachers' weights and sampling\n"
                    "settings), so training spends no time on them.",
        epilog=config_help(EveConfig, {"data.manifest": "the FDD dataset", "fdd.cache_dir": "where samples go "
                                       "(None: run.out_dir/real_cache)", "fdd.real_steps": "teacher DDIM steps",
                                       "fdd.edit_guidance": "edit-teacher text guidance"}, "main key=value options"))
    ap.add_argument("--config", required=True, help="the FDD config the training run will use")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (below)")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        from eve.train.checks import validate

        cfg = load_config(args.config, args.overrides)
        validate(cfg)  # the training run's own checks (a manifest, LoRA alignment's LoRA), before weights load
        logger.info("computed %d new entries in %s", fill_cache(cfg), cache_dir(cfg))

    return run_cli("real_samples", body)


if __name__ == "__main__":
    sys.exit(main())
