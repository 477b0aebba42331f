"""The FDD training dataset: fixed clips of a manifest's videos, square-cropped (paper: 8 frames at 512x512).

Each row gives one clip: `num_frames` frames from row.start every `stride` frames (a short video repeats its last
frame), resized so the short side is `size` and centre-cropped to size x size (paper-notes OQ-23). Clips are fixed
per row so that the teachers' samples for a row can be cached.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from eve.data.video import read_video, resize
from eve.tasks import task_id


def center_crop(frames: Tensor, size: int) -> Tensor:
    """[F, 3, H, W] -> [F, 3, size, size]: short side to `size`, then the centre square."""
    H, W = frames.shape[-2:]
    s = size / min(H, W)
    h, w = max(size, round(H * s)), max(size, round(W * s))
    frames = resize(frames, (h, w))
    top, left = (h - size) // 2, (w - size) // 2
    return frames[..., top : top + size, left : left + size]


def clip_indices(start: int, num_frames: int, stride: int, available: int) -> list[int]:
    return [min(start + i * stride, available - 1) for i in range(num_frames)]


class ClipDataset(Dataset):
    def __init__(self, manifest: pd.DataFrame, num_frames: int, stride: int, size: int):
        self.rows = manifest.reset_index(drop=True)
        self.num_frames, self.stride, self.size = num_frames, stride, size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows.iloc[i]
        video = read_video(row["video"]).frames
        idx = clip_indices(int(row["start"]), self.num_frames, self.stride, video.shape[0])
        return {
            "index": i,
            "frames": center_crop(video[idx], self.size),  # [F, 3, S, S] in [-1, 1]
            "caption": row["caption"],
            "instruction": row["instruction"],
            "task": task_id(row["task"]),
        }


class CaptionRows(Dataset):
    """LoRA alignment's data points (paper §4.4): captions only, the input image is sampled from them."""

    def __init__(self, manifest: pd.DataFrame):
        self.rows = manifest.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        row = self.rows.iloc[i]
        return {"index": i, "input_caption": row["input_caption"], "caption": row["caption"],
                "instruction": row["instruction"], "task": task_id(row["task"])}


def collate(items: list[dict]) -> dict:
    """Items -> a batch: tensors stacked ("frames" [B, F, 3, S, S]), integers as tensors, strings as lists."""
    out = {}
    for key, first in items[0].items():
        values = [it[key] for it in items]
        out[key] = torch.stack(values) if isinstance(first, Tensor) else torch.tensor(values) \
            if isinstance(first, int) else values
    return out
