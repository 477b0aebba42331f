"""A toy FDD dataset for smoke runs: generated clips of a coloured square moving over a background, with one
instruction per task. `write_toy_dataset(folder)` writes clips/*.mp4 and manifest.csv (the FDD manifest schema)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch

from eve.data.manifest import write_table
from eve.data.video import write_video

COLOURS = {"red": (0.9, -0.7, -0.7), "green": (-0.7, 0.8, -0.7), "blue": (-0.7, -0.6, 0.9), "yellow": (0.9, 0.8, -0.8)}
EDITS = [  # (task, instruction, output caption template)
    ("add", "add a small white dot", "a {c} square and a white dot"),
    ("remove", "remove the square", "an empty dark background"),
    ("background", "make the background grey", "a {c} square on a grey background"),
    ("texture", "make the square striped", "a striped {c} square"),
    ("local", "make the square blue", "a blue square"),
    ("style", "make it look like a pencil sketch", "a pencil sketch of a square"),
    ("global", "make it night", "a {c} square at night"),
]


def moving_square(colour: tuple[float, float, float], num_frames: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    f = torch.full((num_frames, 3, size, size), -0.8)
    side = size // 3
    y0, x0 = torch.randint(0, size - side, (2,), generator=g).tolist()
    dy, dx = (torch.randint(-1, 2, (2,), generator=g)).tolist()
    for i in range(num_frames):
        y = min(max(y0 + dy * i, 0), size - side)
        x = min(max(x0 + dx * i, 0), size - side)
        f[i, :, y : y + side, x : x + side] = torch.tensor(colour).view(3, 1, 1)
    return f


def write_toy_dataset(folder: str | os.PathLike, num_videos: int = 4, num_frames: int = 12, size: int = 24) -> Path:
    out = Path(folder)
    rows = []
    names = list(COLOURS)
    for v in range(num_videos):
        c = names[v % len(names)]
        path = write_video(out / "clips" / f"clip{v:03d}.mp4", moving_square(COLOURS[c], num_frames, size, v), 8)
        for task, instruction, caption in EDITS:
            rows.append({"video": str(path.relative_to(out)), "caption": caption.format(c=c), "instruction": instruction,
                         "task": task, "input_caption": f"a {c} square on a dark background", "id": f"clip{v:03d}-{task}"})
    return write_table(pd.DataFrame(rows), out / "manifest.csv")
