"""Periodic sample grids during training: one clip as rows input | plug-and-play | student, frames as columns.
Both edits use the same noise and the same k fixed steps, so the rows differ only by the LoRA."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eve.data.video import to_uint8
from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import evenly_spaced_timesteps
from eve.models.composed import Cond, EveModel, Role
from eve.models.known import first_frame


@torch.no_grad()
def edit_rows(model: EveModel, batch, k: int, seed: int) -> list[torch.Tensor]:
    """[input, plug-and-play, student] pixel clips [F, 3, H, W] of the batch's first clip."""
    F = batch.frames.shape[1]
    shape = (1, F, model.latent_channels, *batch.latent_size(model))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(model.device)
    known = None if batch.f1 is None else first_frame(batch.f1[:1], F, noise)  # LoRA alignment: none
    cond = Cond(batch.caption[:1], batch.instruction[:1], batch.frames[:1], batch.task[:1], known)
    ts = evenly_spaced_timesteps(k, model.schedule.num_train_timesteps)
    rows = [batch.frames[0].float().cpu()]
    for role in (Role.PLUG_AND_PLAY, Role.STUDENT):
        x0 = sample(model.denoiser(cond, role), noise, ts, model.schedule)
        rows.append(model.decode_video(x0)[0].cpu())
    return rows


def grid_image(rows: list[torch.Tensor], scale: int = 1, labels: list[str] | None = None) -> Image.Image:
    """Rows of clips [F, 3, H, W] -> one RGB image, 2-pixel gaps; labels (one per row) are written in a margin
    on the left, after scaling, so they stay legible."""
    F, _, H, W = rows[0].shape
    gap = 2
    canvas = np.full((len(rows) * (H + gap) - gap, F * (W + gap) - gap, 3), 255, np.uint8)
    for r, clip in enumerate(rows):
        for f, frame in enumerate(to_uint8(clip)):
            canvas[r * (H + gap) : r * (H + gap) + H, f * (W + gap) : f * (W + gap) + W] = frame
    img = Image.fromarray(canvas)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST) if scale > 1 else img
    if not labels:
        return img
    from PIL import ImageDraw

    margin = 8 + 7 * max(len(t) for t in labels)
    out = Image.new("RGB", (img.width + margin, img.height), "white")
    out.paste(img, (margin, 0))
    draw = ImageDraw.Draw(out)
    for r, text in enumerate(labels):
        draw.text((4, r * (H + gap) * scale + H * scale // 2 - 5), text, fill="black")
    return out


def save_sample_grid(path: str | os.PathLike, model: EveModel, batch, k: int, seed: int) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    H = batch.frames.shape[-2]
    img = grid_image(edit_rows(model, batch, k, seed), scale=max(1, 128 // H),
                     labels=["input", "plug-and-play", f"student ({k} steps)"])
    tmp = p.with_name(f".{p.name}.tmp")
    img.save(tmp, format="PNG")
    os.replace(tmp, p)
    return p
