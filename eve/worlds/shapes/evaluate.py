"""Evaluation against the shapes world's ground truth, batched over test items.

Rows ("methods"): the edit teacher per frame, the video teacher from the first frame, plug-and-play and the FDD
student (or any LoRA: ablations) at any step count and guidance, and long clips through the sliding windows. A clip
row starts from a first frame f1 that is either the edit teacher's edit of frame 0 ("edited", shared by every row of
one seed, as the paper's pipeline does) or the ground truth's frame 0 ("oracle"), so that the first-frame edit does
not cap every comparison. Metrics: `measure.clip_metrics`. Every row also reports its cost: NFE (network
evaluations per clip, the f1 edit included where it is needed) and seconds per clip (batched, this machine).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pandas as pd
import torch
from torch import Tensor

from eve.diffusion.sampling import sample
from eve.diffusion.timesteps import ddim_timesteps
from eve.editing.pipeline import edit_first_frame, edit_windows
from eve.models.composed import Cond, EveModel, Role
from eve.tasks import task_id
from eve.worlds.shapes import world as W
from eve.worlds.shapes.data import Item, items
from eve.worlds.shapes.measure import clip_metrics

METRICS = ("combined", "success", "warp", "psnr", "contrast", "nfe", "sec_per_clip")
IN_MODEL = "<the LoRA the model holds>"  # Method.lora for a student whose LoRA is attached already (training)


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "edit_teacher" | "video_teacher" | "clip" (plug-and-play or a LoRA student, sliding windows)
    #            | "codec" (the ground truth through the autoencoder: the ceiling every decoded row lives under)
    steps: int
    lora: str | None = None  # a LoRA checkpoint for kind "clip"; None = plug-and-play
    frames: int = W.NUM_FRAMES  # clip length (> model.num_frames: several windows)
    first: str = "edited"  # f1: "edited" (the edit teacher's) or "oracle" (the ground truth's frame 0)
    text_scale: float = 1.0
    image_scale: float = 1.0


class Evaluator:
    """Runs methods over items for one seed. f1 (edited) is computed once per seed and shared by every row."""

    def __init__(self, model: EveModel, *, teacher_steps: int, teacher_guidance: float, teacher_image_guidance: float,
                 spacing: str = "trailing", batch: int = 64):
        self.m = model
        self.teacher_steps, self.tg, self.tig = teacher_steps, teacher_guidance, teacher_image_guidance
        self.spacing, self.batch = spacing, batch
        self.f1_nfe = 0
        self._lora: str | None = None
        self.keep: set[tuple[int, str]] = set()  # (clip, task) items whose videos are kept for grids
        self.kept: dict[tuple[str, int, str], Tensor] = {}

    def _steps(self, n: int) -> Tensor:
        return ddim_timesteps(n, self.m.schedule.num_train_timesteps, self.spacing)

    def _cond(self, chunk: list[Item]) -> Cond:
        m = self.m
        return Cond(m.encode_text([it.caption for it in chunk]), m.encode_text([it.instruction for it in chunk]),
                    task=torch.tensor([task_id(it.task) for it in chunk], device=m.device))

    def _chunks(self, items):
        return [items[i : i + self.batch] for i in range(0, len(items), self.batch)]

    @torch.no_grad()
    def first_frames(self, items: list[Item], seed: int) -> Tensor:
        """The edit teacher's edits of frame 0, latents [N, C, h, w]; sets f1_nfe (per clip)."""
        self._use_lora(None)
        out, before = [], self.m.evaluations  # network evaluations, each guidance branch counted
        for c, chunk in enumerate(self._chunks(items)):
            src0 = torch.stack([W.render(it.source, 0) for it in chunk])[:, None].to(self.m.device)
            gen = torch.Generator().manual_seed(seed * 7919 + c)
            out.append(edit_first_frame(self.m, src0, self._cond(chunk), steps=self._steps(self.teacher_steps),
                                        text_scale=self.tg, image_scale=self.tig, generator=gen))
        self.f1_nfe = (self.m.evaluations - before) // max(1, len(self._chunks(items)))
        return torch.cat(out)

    @torch.no_grad()
    def oracle_first_frames(self, items: list[Item]) -> Tensor:
        gt0 = torch.stack([W.render(it.target, 0) for it in items])[:, None].to(self.m.device)
        return self.m.encode_video(gt0)[:, 0]

    def _use_lora(self, path: str | None) -> None:
        if IN_MODEL in (path, self._lora) and path in (IN_MODEL, None):  # roles switch the attached LoRA on and off
            self._lora = path
            return
        if self._lora == IN_MODEL:
            raise ValueError(f"this Evaluator scores the LoRA its model holds; it cannot load {path} beside it")
        if path == self._lora:
            return
        self.m.unload_lora()
        if path is not None:
            self.m.load_lora(path)
        self._lora = path

    def _generate(self, method: Method, chunk: list[Item], src: Tensor, f1: Tensor, gen: torch.Generator) -> Tensor:
        m = self.m
        if method.kind == "codec":
            target = torch.stack([W.render_video(it.target, src.shape[1]) for it in chunk]).to(m.device)
            return m.encode_video(target)
        steps, base = self._steps(method.steps), self._cond(chunk)
        scales = dict(text_scale=method.text_scale, image_scale=method.image_scale)
        if method.kind == "edit_teacher":  # every frame edited on its own
            cond = Cond(base.caption, base.instruction, src, base.task)
            shape = (len(chunk), src.shape[1], m.latent_channels, *[s // m.codec.scale_factor for s in src.shape[-2:]])
            x = torch.randn(shape, generator=gen).to(m.device)
            return sample(m.denoiser(cond, Role.EDIT_TEACHER, **scales), x, steps, m.schedule)
        if method.kind == "video_teacher":  # the caption and f1 only, never the input clip
            return edit_windows(m, src, Cond(base.caption), f1, steps=steps, overlap=1, role=Role.VIDEO_TEACHER,
                                generator=gen, text_scale=method.text_scale)
        role = Role.STUDENT if method.lora else Role.PLUG_AND_PLAY
        return edit_windows(m, src, base, f1, steps=steps, overlap=1, role=role, generator=gen, **scales)

    @torch.no_grad()
    def run(self, method: Method, items: list[Item], edited_f1: Tensor | None, seed: int) -> list[dict]:
        """Metric rows, one per item. edited_f1: latents [N, C, h, w] for rows with first="edited"."""
        self._use_lora(method.lora if method.kind == "clip" else None)
        rows = []
        for c, chunk in enumerate(self._chunks(items)):
            src = torch.stack([W.render_video(it.source, method.frames) for it in chunk]).to(self.m.device)
            if method.kind in ("edit_teacher", "codec"):  # frame 0 too is edited on its own (or given)
                f1, f1_nfe = None, 0
            elif method.first == "oracle":
                f1, f1_nfe = self.oracle_first_frames(chunk), 0
            else:
                f1, f1_nfe = edited_f1[c * self.batch : c * self.batch + len(chunk)], self.f1_nfe
            gen = torch.Generator().manual_seed(seed * 104729 + c)
            before, t0 = self.m.evaluations, time.perf_counter()
            video = self.m.decode_video(self._generate(method, chunk, src, f1, gen)).clamp(-1, 1).cpu()
            seconds = (time.perf_counter() - t0) / len(chunk)
            nfe = self.m.evaluations - before + f1_nfe
            for j, it in enumerate(chunk):
                if (it.clip, it.task) in self.keep:
                    self.kept[(method.name, it.clip, it.task)] = video[j]
                rows.append({"method": method.name, "seed": seed, "clip": it.clip, "task": it.task, "nfe": nfe,
                             "sec_per_clip": seconds,
                             **clip_metrics(video[j], it.task, it.source, it.target, it.added)})
        return rows


VALIDATION_SEED = 424_242  # guidance sweeps: clips from the training side of the split (not FDD's data seed)
GUIDANCE_GRID = ((1.0, 1.0), (2.0, 1.0), (2.0, 1.5), (3.0, 1.5))


def best_guidance(ev: Evaluator, method: Method, *, clips: int = 21, log=print) -> tuple[float, float]:
    """The (text, image) guidance with the best combined score for `method` (its other fields as given) on
    validation clips: the training side of the split, never the test set."""
    val = items(VALIDATION_SEED, clips, all_tasks=False)
    scores = {}
    for ts, ims in GUIDANCE_GRID:
        rows = ev.run(replace(method, name="sweep", text_scale=ts, image_scale=ims), val, None, 0)
        scores[(ts, ims)] = sum(r["combined"] for r in rows) / len(rows)
        log(f"{method.name}: guidance text {ts} image {ims}: combined {scores[(ts, ims)]:.3f} on {clips} "
            "validation clips")
    return max(scores, key=scores.get)


def summarise(rows: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(overall: method x metric, mean and spread over seeds; per task: method x task combined score)."""
    df = pd.DataFrame(rows)
    metrics = [c for c in METRICS if c in df]
    per_seed = df.groupby(["method", "seed"], sort=False)[metrics].mean()
    mean = per_seed.groupby("method", sort=False).mean()
    spread = per_seed.groupby("method", sort=False).std().fillna(0.0)
    overall = mean.copy().astype(object)
    for c in metrics:
        if c in ("nfe", "sec_per_clip"):
            overall[c] = [f"{a:.0f}" if c == "nfe" else f"{a:.3f}" for a in mean[c]]
        else:
            overall[c] = [f"{a:.3f} ± {b:.3f}" for a, b in zip(mean[c], spread[c])]
    per_task = df.pivot_table(index="method", columns="task", values="combined", aggfunc="mean", sort=False)
    return overall, per_task
