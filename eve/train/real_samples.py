"""The teachers' samples each data point needs (paper §3.2 and §4; paper-notes §1.6, OQ-8, OQ-9):

* edit: the edit teacher's per-frame DDIM edit of every input frame, from noise. Frame 0 of it is f1, the edited
  first frame that conditions the video adapter everywhere (student, video-teacher SDS, video real sample); all of
  it is D_e's "real" (input frame, instruction, output frame) data.
* video: the video teacher's DDIM clip from noise for the caption, conditioned on f1; D_v's "real" data.

Both are latents [F, C, h, w]. They are either cached per data point (safetensors files keyed by the data point
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
from eve.models.lora import atomic_save
from eve.train.identity import weights_fingerprint

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
    gens = generator if isinstance(generator, list) else None
    dev = model.device

    def noise() -> Tensor:
        if gens is None:
            return torch.randn((B, *shape), generator=generator).to(dev)
        return torch.stack([torch.randn(shape, generator=g) for g in gens]).to(dev)

    ts = ddim_timesteps(steps, model.schedule.num_train_timesteps, spacing)
    cond = Cond(caption, instruction, frames.to(dev), task.to(dev))
    den = model.denoiser(cond, Role.EDIT_TEACHER, text_scale=edit_guidance, image_scale=edit_image_guidance)
    edit = sample(den, noise(), ts, model.schedule)
    if not video:
        return edit, None
    known = first_frame(edit[:, 0], F, noise())
    den = model.denoiser(Cond(caption, known=known), Role.VIDEO_TEACHER, text_scale=video_guidance)
    return edit, sample(den, noise(), ts, model.schedule)


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
    return hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def datapoint_key(row, fingerprint: str) -> str:
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

    from eve.data.clips import ClipDataset
    from eve.data.manifest import read_manifest

    rows = read_manifest(cfg.data.manifest)
    model = model or EveModel.from_config(cfg.model)
    cache = RealSampleCache(cache_dir(cfg))
    fp = teacher_fingerprint(cfg)
    ds = ClipDataset(rows, cfg.model.num_frames, cfg.data.stride, cfg.data.size or cfg.model.resolution)
    keys = [datapoint_key(rows.iloc[i], fp) for i in range(len(rows))]
    todo = [i for i, k in enumerate(keys) if not cache.path(k).is_file()]
    bar = tqdm(total=len(todo), desc="teacher samples", disable=not progress)
    for start in range(0, len(todo), batch):
        ids = todo[start : start + batch]
        items = [ds[i] for i in ids]
        edit, video = teacher_samples(
            model, torch.stack([it["frames"] for it in items]), model.encode_text([it["caption"] for it in items]),
            model.encode_text([it["instruction"] for it in items]), torch.tensor([it["task"] for it in items]),
            steps=cfg.fdd.real_steps, spacing=cfg.edit.timestep_spacing, edit_guidance=cfg.fdd.edit_guidance,
            edit_image_guidance=cfg.fdd.edit_image_guidance, video_guidance=cfg.fdd.video_guidance,
            generator=[row_generator(cfg.run.seed, keys[i]) for i in ids],
        )
        for j, i in enumerate(ids):
            cache.put(keys[i], {"edit": edit[j], "video": video[j]})
        bar.update(len(ids))
    bar.close()
    done = len(todo)
    return done


def cache_dir(cfg) -> Path:
    return Path(cfg.fdd.cache_dir) if cfg.fdd.cache_dir else Path(cfg.run.out_dir) / "real_cache"


def main(argv: list[str] | None = None) -> int:
    from eve.config import EveConfig, load_config
    from eve.errors import EveError
    from eve.utils.cli import HelpFormatter, config_help, run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(
        prog="python -m eve.train.real_samples", formatter_class=HelpFormatter,
        description="Precompute the teachers' samples of an FDD dataset into the cache train_fdd.py reads (one edit\n"
                    "teacher and one video teacher sample per data point, keyed by the teachers' weights and\n"
                    "sampling settings), so training spends no time on them.",
        epilog=config_help(EveConfig, {"data.manifest": "the FDD dataset", "fdd.cache_dir": "where samples go "
                                       "(None: run.out_dir/real_cache)", "fdd.real_steps": "teacher DDIM steps",
                                       "fdd.edit_guidance": "edit-teacher text guidance"}, "main key=value options"))
    ap.add_argument("--config", required=True, help="the FDD config the training run will use")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (below)")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        cfg = load_config(args.config, args.overrides)
        if not cfg.data.manifest:
            raise EveError("data.manifest is not set")
        logger.info("computed %d new entries in %s", fill_cache(cfg), cache_dir(cfg))

    return run_cli("real_samples", body)


if __name__ == "__main__":
    sys.exit(main())
