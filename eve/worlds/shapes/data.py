"""The shapes world's FDD dataset and held-out test set.

FDD data (`write_fdd_dataset`): source clips only, as lossless PNG frame folders, and a manifest in the FDD schema
with one instruction and output caption per task for each clip (as EVE's 1,600 clips x 7 instructions). No edited
video is ever written here: FDD must learn without one.

Test set (`held_out_items`): clips from a disjoint seed range, each with every task's instruction, output caption and
target scene, from which the ground-truth edited video (the same motion with the edit applied) is rendered.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from eve.data.manifest import write_table
from eve.data.video import to_uint8
from eve.tasks import TASKS
from eve.worlds.shapes import world as W

TEST_SEED = 1_000_003  # test scenes come from a generator no training data uses


@dataclass
class Item:
    clip: int
    task: str
    source: W.Scene
    target: W.Scene
    instruction: str
    caption: str  # output caption
    input_caption: str

    @property
    def added(self) -> tuple[str, str] | None:
        """(colour, shape) of an object placed freely by "add" (checked by the parser, not by pixels)."""
        return (self.target.objects[1].colour, self.target.objects[1].shape) if self.task == "add" else None


def items(seed: int, num_clips: int, num_frames: int = 8, all_tasks: bool = True) -> list[Item]:
    """num_clips source clips, each with all 7 tasks, or (all_tasks=False) with task number clip % 7."""
    rng = random.Random(seed)
    out = []
    for c in range(num_clips):
        src = W.source_scene(rng)
        for task in TASKS if all_tasks else [TASKS[c % len(TASKS)]]:
            instruction, tgt = W.edit(src, task, rng, num_frames)
            out.append(Item(c, task, src, tgt, instruction, W.caption(tgt), W.caption(src)))
    return out


def held_out_items(num_clips: int = 140, num_frames: int = 8, all_tasks: bool = False) -> list[Item]:
    return items(TEST_SEED, num_clips, num_frames, all_tasks)


def write_frames(folder: Path, video: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(to_uint8(video)):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return folder


def write_fdd_dataset(out: str | os.PathLike, num_clips: int = 200, num_frames: int = 8, seed: int = 0) -> Path:
    """Clips (PNG frame folders) + manifest.csv; returns the manifest path."""
    out = Path(out)
    rows = []
    for it in items(seed, num_clips, num_frames):
        rel = Path("clips") / f"{it.clip:05d}"
        if not (out / rel / f"{num_frames - 1:03d}.png").is_file():
            write_frames(out / rel, W.render_video(it.source, num_frames))
        rows.append({"video": str(rel), "caption": it.caption, "instruction": it.instruction, "task": it.task,
                     "input_caption": it.input_caption, "id": f"{it.clip:05d}-{it.task}"})
    return write_table(pd.DataFrame(rows), out / "manifest.csv")
