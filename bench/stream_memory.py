"""Does memory stay flat with a clip's length? Peak RSS of `edit.py` and `python -m eve.data` on one clip, against
the clip's length and resolution (issue 10).

    python bench/stream_memory.py                                  # 480p / 1080p / 4K at 10 s, 4K at 10 s and 60 s
    python bench/stream_memory.py --sizes 4k --lengths 10 600 --fps 8   # the 10-minute 4K row

Each case writes a generated clip (a scrolling texture with a moving square, H.264) and runs the real entry points
in a child process: edit.py with its default config (the committed shapes-world teachers, plug-and-play) and the
data preparation with a captions file. The edit runs 2 DDIM steps for frame 0 and for each window (memory does not
depend on the steps; time does, and is not what this bench reads). Peak RSS is the child's own (os.wait4), so every row is measured alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"480p": (480, 854), "1080p": (1080, 1920), "4k": (2160, 3840)}


def write_clip(path: Path, size: tuple[int, int], seconds: float, fps: int) -> Path:
    """A clip with motion everywhere (a texture scrolling under a moving square), encoded fast (ultrafast preset)."""
    import av

    import cv2

    H, W = size
    rng = np.random.default_rng(0)
    coarse = (rng.random((8, 8 * (W + 2 * H) // H + 1, 3)) * 255).astype(np.uint8)  # smooth: one scene, no cuts
    texture = cv2.resize(coarse, (W + 2 * H, H), interpolation=cv2.INTER_CUBIC)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "23"}
        for i in range(int(seconds * fps)):
            x = (i * 2) % (2 * H)
            frame = np.ascontiguousarray(texture[:, x : x + W])
            side = H // 4
            top, left = H // 3, (i * 8) % (W - side)
            frame[top : top + side, left : left + side] = (220, 40, 40)
            for packet in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def peak_rss(cmd: list[str], cwd: Path) -> tuple[float, float, int]:
    """(peak RSS in GB, seconds, exit code) of a child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        print(err[-2000:], file=sys.stderr)
    return usage.ru_maxrss / 2**20, time.perf_counter() - start, proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--lengths", nargs="+", type=float, default=[10, 60], help="seconds (at the largest size)")
    ap.add_argument("--fps", type=int, default=24)
    ap.add_argument("--parts", nargs="+", default=["edit", "prepare"], choices=["edit", "prepare"])
    ap.add_argument("--out", default="runs/bench/stream_memory")
    args = ap.parse_args(argv)

    import pandas as pd

    from eve.utils.tables import markdown

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    largest = max(args.sizes, key=lambda k: SIZES[k][0])
    cases = [(s, min(args.lengths)) for s in args.sizes] + [(largest, n) for n in sorted(args.lengths)[1:]]
    rows = []
    for size, seconds in cases:
        name = f"{size}-{seconds:g}s"
        folder = out / name
        folder.mkdir(exist_ok=True)
        clip = folder / "clip.mp4"
        if not clip.is_file():
            t = time.perf_counter()
            write_clip(clip, SIZES[size], seconds, args.fps)
            print(f"{name}: clip written in {time.perf_counter() - t:.0f} s", file=sys.stderr)
        row = {"clip": name, "frames": int(seconds * args.fps), "source MB": round(clip.stat().st_size / 2**20, 1)}
        if "edit" in args.parts:
            gb, sec, code = peak_rss([sys.executable, str(ROOT / "edit.py"), "--video", str(clip), "--instruction",
                                      "make the red square striped", "--caption", "a striped red square",
                                      "--task", "texture", "--output", str(folder / "edited.mp4"), "--steps", "2",
                                      "edit.teacher_steps=2"], folder)
            row |= {"edit.py peak RSS GB": round(gb, 2), "edit.py s": round(sec), "edit ok": code == 0}
        if "prepare" in args.parts:
            raw = folder / "raw"
            raw.mkdir(exist_ok=True)
            if not (raw / "clip.mp4").exists():
                os.link(clip, raw / "clip.mp4")
            pd.DataFrame({"video": ["clip.mp4"], "caption": ["a red square over a texture"]}).to_csv(
                raw / "captions.csv", index=False)
            gb, sec, code = peak_rss([sys.executable, "-m", "eve.data", f"input={raw}", f"out={folder / 'prep'}",
                                      f"captions_file={raw / 'captions.csv'}", "workers=1", "motion_min=null",
                                      "text_max=null"], folder)
            row |= {"eve.data peak RSS GB": round(gb, 2), "eve.data s": round(sec), "prepare ok": code == 0}
        rows.append(row)
        print(row, file=sys.stderr)
    table = markdown(pd.DataFrame(rows))
    (out / "table.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
