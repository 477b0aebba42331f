"""The embedded default run: `python -m eve.demo [OUT_DIR] [--tiny-dir runs/tiny]`.

1. Writes the tiny random-weight model set with its toy FDD dataset (runs/tiny, which configs/tiny.yaml names).
2. Renders a held-out 24-frame shapes-world clip and edits it with the real `edit.py`, using the committed shapes
   teachers (data/shapes/teachers): plug-and-play (both adapters, no LoRA) and, when present, the committed FDD
   student (data/shapes/student), each at 3 steps: frame 0 by the edit teacher, the rest over sliding windows.
   Writes OUT_DIR/input/ (PNG frames: lossless, H.264's chroma subsampling would smear 32x32 colours),
   OUT_DIR/plug_and_play.gif, OUT_DIR/student.gif, and OUT_DIR/grid.png and grid.gif (rows: input | plug-and-play
   | student, labelled).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEACHERS = ROOT / "data" / "shapes" / "teachers"
STUDENT = ROOT / "data" / "shapes" / "student"


def sample_clip(num_frames: int = 20, height: int = 32, width: int = 48) -> torch.Tensor:
    """[F, 3, H, W] in [-1, 1]: a red square sliding right over a dark background."""
    f = -0.8 * torch.ones(num_frames, 3, height, width)
    side = max(2, height // 3)
    for i in range(num_frames):
        x = round(i * (width - side) / max(1, num_frames - 1))
        f[i, :, height // 3 : height // 3 + side, x : x + side] = torch.tensor([0.8, -0.6, -0.6]).view(3, 1, 1)
    return f


def main(argv: list[str] | None = None) -> int:
    import argparse

    from eve.data.toy import write_toy_dataset
    from eve.data.video import read_video, write_video
    from eve.editing.cli import main as edit_main
    from eve.models.tiny import write_tiny

    from eve.utils.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m eve.demo", formatter_class=HelpFormatter, description=__doc__)
    ap.add_argument("out_dir", nargs="?", default="runs/demo", help="where the edited clips and the grid go")
    ap.add_argument("--tiny-dir", default="runs/tiny", help="where the tiny model set and toy dataset go")
    args = ap.parse_args(argv)
    out = Path(args.out_dir)
    tiny_cfg = write_tiny(args.tiny_dir)
    write_toy_dataset(Path(args.tiny_dir) / "data")
    if not (TEACHERS / "eve.yaml").is_file():  # a checkout without the shapes teachers: the tiny set
        clip = write_video(out / "input.mp4", sample_clip(), 12)
        return edit_main(["--config", str(tiny_cfg), "--video", str(clip), "--instruction", "make the square blue",
                          "--caption", "a blue square on a dark background", "--task", "texture",
                          "--output", str(out / "edited.mp4")])

    from eve.worlds.shapes import world as W
    from eve.worlds.shapes.data import held_out_items, write_frames

    from eve.train.samples import grid_image

    item = next(it for it in held_out_items(14) if it.task == "texture")
    source = W.render_video(item.source, 24)
    clip = write_frames(out / "input", source)
    rows, labels = [source], ["input"]
    runs = [("plug-and-play", "plug_and_play.gif", [])]
    if (STUDENT / "student_lora.safetensors").is_file():
        runs.append(("FDD student", "student.gif", ["--checkpoint", str(STUDENT)]))
    for label, name, extra in runs:
        code = edit_main(["--config", str(TEACHERS / "eve.yaml"), "--video", str(clip), "--instruction",
                          item.instruction, "--caption", item.caption, "--task", item.task, "--steps", "3",
                          "--seed", "0", "--output", str(out / name), *extra])
        if code:
            return code
        rows.append(read_video(out / name).frames)
        labels.append(label)
    grid_image(rows, scale=4, labels=labels).save(out / "grid.png")
    strip = torch.cat(rows, dim=-2)  # [F, 3, rows * H, W]: stacked, frames in time
    write_video(out / "grid.gif", torch.nn.functional.interpolate(strip, scale_factor=4, mode="nearest"), 8)
    print(f"{item.instruction!r}: {out / 'grid.png'} and {out / 'grid.gif'} (rows: {' | '.join(labels)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
