"""Generated raw videos with known content, for tests and for trying `python -m eve.data` without data:

    python -m eve.data.synthetic OUT_DIR

cut.mp4 (a hard cut at frame 30), fade.mp4 (fade to black and back: scenes at 0-30 and 50-80), static.mp4 (nothing
moves), moving.mp4 (a panning textured scene), text.mp4 (moving, with a burned-in caption), broken.mp4 (not a
video), and captions.csv (a caption per video file).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from eve.data.video import to_tensor, write_video

W, H, FPS = 192, 112, 24


def textured(seed: int, hue: tuple[int, int, int]) -> np.ndarray:
    """A wide textured backdrop (random blobs on a tinted gradient), [H, 3W, 3] uint8, to pan across."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((H, 3 * W, 3), np.uint8)
    img[:] = hue
    for _ in range(120):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, (int(rng.integers(0, 3 * W)), int(rng.integers(0, H))), int(rng.integers(3, 14)), c, -1)
    return img


def scene(seed: int, hue, n: int, pan: float, shape: str = "circle") -> list[np.ndarray]:
    import cv2

    back = textured(seed, hue)
    frames = []
    for i in range(n):
        x0 = int(round(i * pan))
        f = back[:, x0 : x0 + W].copy()
        cx = int(40 + i * pan * 1.5) % W
        if shape == "circle":
            cv2.circle(f, (cx, H // 2), 18, (230, 30, 30), -1)
        else:
            cv2.rectangle(f, (cx - 16, H // 2 - 16), (cx + 16, H // 2 + 16), (30, 200, 40), -1)
        frames.append(f)
    return frames


def fade(frames: list[np.ndarray], out: bool) -> list[np.ndarray]:
    n = len(frames)
    w = [(1 - (i + 1) / n) if out else (i + 1) / n for i in range(n)]
    return [(f.astype(np.float32) * a).astype(np.uint8) for f, a in zip(frames, w)]


def write(path: Path, frames: list[np.ndarray]) -> None:
    write_video(path, to_tensor(np.stack(frames)), FPS)


def write_synthetic(out: str | Path) -> Path:
    import cv2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "cut.mp4", scene(1, (40, 60, 160), 30, 2.0) + scene(2, (200, 190, 40), 30, 2.0, "square"))
    a, b = scene(3, (150, 60, 60), 40, 2.0), scene(4, (60, 150, 90), 40, 2.0, "square")
    black = [np.zeros((H, W, 3), np.uint8)] * 4
    write(out / "fade.mp4", a[:30] + fade(a[30:40], True) + black + fade(b[:6], False)[:6] + b[6:40])
    write(out / "static.mp4", scene(5, (90, 90, 90), 48, 0.0))
    write(out / "moving.mp4", scene(6, (120, 80, 40), 48, 2.0))
    texty = scene(7, (60, 100, 140), 48, 2.0)
    for f in texty:
        cv2.rectangle(f, (0, H - 40), (W, H), (0, 0, 0), -1)
        cv2.putText(f, "SUBSCRIBE NOW", (8, H - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
    write(out / "text.mp4", texty)
    (out / "broken.mp4").write_bytes(b"\x00\x01 not a video " * 50)
    captions = {
        "cut.mp4": "a red ball rolling past a blue wall", "fade.mp4": "a red ball in a dark red room",
        "static.mp4": "a red ball on a grey carpet", "moving.mp4": "a red ball rolling on a brown floor",
        "text.mp4": "a red ball in front of a blue screen",
    }
    pd.DataFrame({"video": list(captions), "caption": list(captions.values())}).to_csv(out / "captions.csv", index=False)
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from eve.utils.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m eve.data.synthetic", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("out", nargs="?", default="runs/raw_videos", help="folder to write")
    print(write_synthetic(ap.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
