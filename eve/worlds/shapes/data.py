"""The shapes world's FDD dataset, held-out test set, and the split between them.

Held out (`held_out`): a source scene is a test scene when a hash of its parameters falls in one bucket of
HELD_OUT_BUCKETS. Every training stream (the teachers' and FDD's) draws its scenes with `draw`, which rejects held-out
scenes, and the test set takes only held-out ones, so no teacher and no FDD run ever sees a test clip or its frames
(tests/test_shapes.py checks the frames).

FDD data (`write_fdd_dataset`): source clips only, as lossless PNG frame folders, and a manifest in the FDD schema
with one instruction and output caption per task for each clip (as EVE's 1,600 clips x 7 instructions). No edited
video is ever written here: FDD must learn without one.

Test set (`held_out_items`): clips from a disjoint seed range, each with every task's instruction, output caption and
target scene, from which the ground-truth edited video (the same motion with the edit applied) is rendered.
"""

from __future__ import annotations

import os
import random
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from eve.data.manifest import write_table
from eve.data.video import to_uint8
from eve.tasks import TASKS
from eve.worlds.shapes import world as W

TEST_SEED = 1_000_003  # test scenes come from a generator no training data uses
HELD_OUT_BUCKETS = 16


def held_out(scene: W.Scene) -> bool:
    """Is this scene (by its plain geometry: objects, pan, shading, background) reserved for the test set?"""
    plain = W.Scene(scene.background, tuple(replace(o, pattern=None) for o in scene.objects), scene.pan, scene.shade)
    return zlib.crc32(repr(plain).encode()) % HELD_OUT_BUCKETS == 0


def draw(make, rng: random.Random, test: bool = False) -> W.Scene:
    """A scene from `make(rng)` on the requested side of the split."""
    while True:
        scene = make(rng)
        if held_out(scene) == test:
            return scene


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
    def added(self) -> str | None:
        """Colour of the object "add" places freely (checked by the parser, not by pixels)."""
        return self.target.objects[-1].colour if self.task == "add" else None


def items(seed: int, num_clips: int, all_tasks: bool = True, test: bool = False) -> list[Item]:
    """num_clips source clips, each with all 7 tasks, or (all_tasks=False) with task number clip % 7."""
    rng = random.Random(seed)
    out = []
    for c in range(num_clips):
        src = draw(W.source_scene, rng, test)
        for task in TASKS if all_tasks else [TASKS[c % len(TASKS)]]:
            instruction, tgt = W.edit(src, task, rng)
            out.append(Item(c, task, src, tgt, instruction, W.caption(tgt), W.caption(src)))
    return out


def held_out_items(num_clips: int = 140, all_tasks: bool = False) -> list[Item]:
    return items(TEST_SEED, num_clips, all_tasks, test=True)


def write_frames(folder: Path, video: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(to_uint8(video)):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")
    return folder


def write_fdd_dataset(out: str | os.PathLike, num_clips: int = 200, num_frames: int = W.NUM_FRAMES,
                      seed: int = 0) -> Path:
    """Clips (PNG frame folders) + manifest.csv; returns the manifest path."""
    out = Path(out)
    rows = []
    for it in items(seed, num_clips):
        rel = Path("clips") / f"{it.clip:05d}"
        if not (out / rel / f"{num_frames - 1:03d}.png").is_file():
            write_frames(out / rel, W.render_video(it.source, num_frames))
        rows.append({"video": str(rel), "caption": it.caption, "instruction": it.instruction, "task": it.task,
                     "input_caption": it.input_caption, "id": f"{it.clip:05d}-{it.task}"})
    return write_table(pd.DataFrame(rows), out / "manifest.csv")
