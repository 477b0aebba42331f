"""The embedded default run: `python -m eve.demo [OUT_DIR] [--tiny-dir runs/tiny]`.

Writes the tiny random-weight model set with its toy FDD dataset (runs/tiny, which configs/tiny.yaml names) and a
generated 20-frame 3:2 clip, then runs the real `edit.py` entry point on them. Random weights edit nothing meaningful: this proves the whole path (loading, teacher first frame,
student windows, video I/O) works on a fresh machine in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def sample_clip(num_frames: int = 20, height: int = 32, width: int = 48) -> torch.Tensor:
    """[F, 3, H, W] in [-1, 1]: a red square sliding right over a dark background."""
    f = -0.8 * torch.ones(num_frames, 3, height, width)
    side = max(2, height // 3)
    for i in range(num_frames):
        x = round(i * (width - side) / max(1, num_frames - 1))
        f[i, :, height // 3 : height // 3 + side, x : x + side] = torch.tensor([0.8, -0.6, -0.6]).view(3, 1, 1)
    return f


def main(argv: list[str] | None = None) -> int:
    from eve.data.video import write_video
    from eve.editing.cli import main as edit_main
    from eve.models.tiny import write_tiny

    import argparse

    from eve.data.toy import write_toy_dataset

    ap = argparse.ArgumentParser(prog="python -m eve.demo")
    ap.add_argument("out_dir", nargs="?", default="runs/demo")
    ap.add_argument("--tiny-dir", default="runs/tiny", help="where the tiny model set and toy dataset go")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    cfg = write_tiny(args.tiny_dir)
    write_toy_dataset(Path(args.tiny_dir) / "data")
    clip = write_video(out / "input.mp4", sample_clip(), 12)
    return edit_main([
        "--config", str(cfg), "--video", str(clip), "--instruction", "make the square blue",
        "--caption", "a blue square on a dark background", "--task", "texture", "--output", str(out / "edited.mp4"),
    ])


if __name__ == "__main__":
    sys.exit(main())
