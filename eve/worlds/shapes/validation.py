"""The shapes world's validation scorer for training (run.validation=eve.worlds.shapes.validation:scorer).

Fixed validation clips from the training side of the split (evaluate.VALIDATION_SEED, one task a clip, every task
equally often; never the held-out test set and never FDD's own clips), their first frames edited once by the edit
teacher as the pipeline does, then at each call the student edits them at fdd.k steps and the edit.* guidance (one
seed) and the world's metrics are averaged, with the fine detail of the generated frames (measure.fine_detail).
"""

from __future__ import annotations

import torch

from eve.worlds.shapes.data import items
from eve.worlds.shapes.evaluate import IN_MODEL, VALIDATION_SEED, Evaluator, Method
from eve.worlds.shapes.measure import clip_metrics, fine_detail

CLIPS = 28  # 4 a task
METRICS = ("combined", "success", "warp", "psnr", "contrast")


def scorer(cfg, model, *, clips: int = CLIPS, seed: int = 0):
    e, f = cfg.edit, cfg.fdd
    ev = Evaluator(model, teacher_steps=e.teacher_steps, teacher_guidance=f.edit_guidance,
                   teacher_image_guidance=f.edit_image_guidance, spacing=e.timestep_spacing)
    val = items(VALIDATION_SEED, clips, all_tasks=False)
    ev.keep = {(it.clip, it.task) for it in val}
    f1 = ev.first_frames(val, seed)
    method = Method("student", "clip", f.k, IN_MODEL, text_scale=e.guidance, image_scale=e.image_guidance)

    def score(model) -> dict:
        ev.kept.clear()
        ev.run(method, val, f1, seed)
        return summary(torch.stack([ev.kept[(method.name, it.clip, it.task)] for it in val]), val)

    return score


def summary(videos: torch.Tensor, val: list) -> dict:
    """The world's metrics of edited clips [N, F, 3, S, S] (pixels in [-1, 1]) of items `val`, averaged over the
    clips that have each (contrast: the pattern edits only; psnr: the one-to-one ones), and their fine detail over
    frames 1..F-1 (frame 0 is the given f1)."""
    rows = [clip_metrics(videos[i], it.task, it.source, it.target, it.added) for i, it in enumerate(val)]
    out = {}
    for m in METRICS:
        values = [r[m] for r in rows if r.get(m) is not None and r[m] == r[m]]
        out[m] = sum(values) / len(values) if values else float("nan")
    return out | {"detail": float(fine_detail(videos[:, 1:]).mean())}
