"""Evaluation against the shapes world's ground truth, batched over test items.

Rows ("methods"): the edit teacher per frame, the video teacher from the edited first frame, plug-and-play and the
FDD student (or any LoRA: ablations) at k and at many steps, and a long clip through the sliding windows. Every
row of one seed shares the same edited first frame f1 per item (the edit teacher's), so rows differ only by how
they edit the rest of the clip.

Metrics per item (all frames of the clip):
* psnr: against the ground-truth edited video (not for "add", whose placement is free);
* success: fraction of frames the parser reads as the target scene (style, background, object count, colours,
  stripes, positions within 2.5 px; for "add", a second object of the requested colour anywhere);
* temporal: | mean frame-to-frame change of the edit - that of the ground truth | (lower is better);
* structure: mean distance (px) between the object's track in the edited clip and in the source clip, both read by
  the parser (not for "remove"); a frame where the object is not found counts 8 px;
* combined = mean of success, clip((psnr - 10) / 20, 0, 1), exp(-temporal / 0.05), exp(-structure / 2), over the
  metrics an item has. Defined before any result was seen; see README.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import ddim_timesteps
from eve.editing.pipeline import edit_first_frame, edit_windows
from eve.models.composed import Cond, EveModel, Role
from eve.models.lora import has_lora, load_lora
from eve.tasks import task_id
from eve.worlds.shapes import world as W
from eve.worlds.shapes.data import Item
from eve.worlds.shapes.parser import matches, parse, track

MISSING_PX = 8.0


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "edit_teacher" | "video_teacher" | "clip" (plug-and-play or a LoRA student, sliding windows)
    steps: int
    lora: str | None = None  # a LoRA checkpoint for kind "clip"; None = plug-and-play
    frames: int = 8  # clip length (> model.num_frames: several windows)


def psnr(x: Tensor, y: Tensor) -> float:
    mse = float(((x - y) / 2).pow(2).mean())  # pixels in [-1, 1] -> [0, 1]
    return 10 * math.log10(1 / max(mse, 1e-10))


def frame_change(v: Tensor) -> float:
    return float((v[1:] - v[:-1]).abs().mean()) if v.shape[0] > 1 else 0.0


def item_metrics(video: Tensor, item: Item, source: Tensor, target: Tensor) -> dict:
    """video, source, target: [F, 3, S, S] in [-1, 1]."""
    F = video.shape[0]
    out = {"success": sum(matches(parse(video[t]), item.target, t, added=item.added) for t in range(F)) / F,
           "temporal": abs(frame_change(video) - frame_change(target))}
    if item.task != "add":
        out["psnr"] = psnr(video, target)
    if item.task != "remove":
        found = track(video, item.target.objects[0].colour)
        reference = track(source, item.source.objects[0].colour)
        dist = [MISSING_PX if c is None or r is None else math.dist(c, r) for c, r in zip(found, reference)]
        out["structure"] = sum(dist) / F
    parts = [out["success"], math.exp(-out["temporal"] / 0.05)]
    if "psnr" in out:
        parts.append(min(1.0, max(0.0, (out["psnr"] - 10) / 20)))
    if "structure" in out:
        parts.append(math.exp(-out["structure"] / 2))
    out["combined"] = sum(parts) / len(parts)
    return out


class Evaluator:
    """Runs methods over items for one seed; f1 is computed once and shared by every row."""

    def __init__(self, model: EveModel, *, teacher_steps: int, teacher_guidance: float, teacher_image_guidance: float,
                 video_guidance: float, spacing: str = "trailing", batch: int = 64):
        self.m = model
        self.teacher_steps, self.tg, self.tig, self.vg = teacher_steps, teacher_guidance, teacher_image_guidance, video_guidance
        self.spacing, self.batch = spacing, batch
        self._lora: str | None = None
        self.keep: set[tuple[int, str]] = set()  # (clip, task) items whose videos are kept for grids
        self.kept: dict[tuple[str, int, str], Tensor] = {}

    def _steps(self, n: int) -> Tensor:
        return ddim_timesteps(n, self.m.schedule.num_train_timesteps, self.spacing)

    def _cond(self, chunk: list[Item]) -> Cond:
        m = self.m
        return Cond(m.encode_text([it.caption for it in chunk]), m.encode_text([it.instruction for it in chunk]),
                    task=torch.tensor([task_id(it.task) for it in chunk], device=m.device))

    @torch.no_grad()
    def first_frames(self, items: list[Item], seed: int) -> Tensor:
        out = []
        for c, chunk in enumerate(self._chunks(items)):
            src0 = torch.stack([W.render(it.source, 0) for it in chunk])[:, None].to(self.m.device)
            gen = torch.Generator().manual_seed(seed * 7919 + c)
            out.append(edit_first_frame(self.m, src0, self._cond(chunk), steps=self._steps(self.teacher_steps),
                                        text_scale=self.tg, image_scale=self.tig, generator=gen))
        return torch.cat(out)

    def _chunks(self, items):
        return [items[i : i + self.batch] for i in range(0, len(items), self.batch)]

    def _use_lora(self, path: str | None) -> None:
        if path == self._lora:
            return
        if path is None:
            if has_lora(self.m.unet):
                self.m.unet.delete_adapters("student")
        else:
            load_lora(self.m.unet, path)
        self.m._lora_on = None
        self._lora = path

    @torch.no_grad()
    def run(self, method: Method, items: list[Item], first: Tensor, seed: int) -> list[dict]:
        m = self.m
        self._use_lora(method.lora if method.kind == "clip" else None)
        rows = []
        for c, chunk in enumerate(self._chunks(items)):
            F = method.frames
            src = torch.stack([W.render_video(it.source, F) for it in chunk]).to(m.device)
            f1 = first[c * self.batch : c * self.batch + len(chunk)]
            base = self._cond(chunk)
            gen = torch.Generator().manual_seed(seed * 104729 + c)
            steps = self._steps(method.steps)
            if method.kind == "edit_teacher":  # every frame edited on its own
                cond = Cond(base.caption, base.instruction, src, base.task)
                x = torch.randn(len(chunk), F, *f1.shape[1:], generator=gen).to(m.device)
                den = m.denoiser(cond, Role.EDIT_TEACHER, text_scale=self.tg, image_scale=self.tig)
                lat = sample(den, x, steps, m.schedule)
            elif method.kind == "video_teacher":  # the caption and f1 only, never the input clip
                lat = edit_windows(m, src, Cond(base.caption), f1, steps=steps, overlap=1, role=Role.VIDEO_TEACHER,
                                   text_scale=self.vg, generator=gen)
            else:
                role = Role.STUDENT if method.lora else Role.PLUG_AND_PLAY
                lat = edit_windows(m, src, base, f1, steps=steps, overlap=1, role=role, generator=gen)
            video = m.decode_video(lat).clamp(-1, 1).cpu()
            for j, it in enumerate(chunk):
                if (it.clip, it.task) in self.keep:
                    self.kept[(method.name, it.clip, it.task)] = video[j]
                target = W.render_video(it.target, F)
                rows.append({"method": method.name, "seed": seed, "clip": it.clip, "task": it.task,
                             **item_metrics(video[j], it, src[j].cpu(), target)})
        return rows


def summarise(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall: method x metric, mean and spread over seeds; per task: method x task combined score)."""
    df = pd.DataFrame(rows)
    metrics = [c for c in ("combined", "success", "psnr", "temporal", "structure") if c in df]
    per_seed = df.groupby(["method", "seed"], sort=False)[metrics].mean()
    mean = per_seed.groupby("method", sort=False).mean()
    spread = per_seed.groupby("method", sort=False).std().fillna(0.0)
    overall = mean.copy()
    for c in metrics:
        overall[c] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(mean[c], spread[c])]
    per_task = df.pivot_table(index="method", columns="task", values="combined", aggfunc="mean", sort=False)
    return overall, per_task


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (index first), floats to 3 decimals."""
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    head = [df.index.name or ""] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([str(i)] + [fmt(v) for v in row]) + " |" for i, row in zip(df.index, df.values.tolist())]
    return "\n".join(lines)
