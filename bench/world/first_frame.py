"""Which step count should frame 0's edit take? Its cost against its quality, on the shapes world's ground truth
(issue 12): every EVE edit starts with the edit teacher's edit of frame 0 at edit.teacher_steps, and that, not the
distilled student, sets the edit's latency.

    python bench/world/first_frame.py [--config data/shapes/teachers/eve.yaml] [--clips 70] [--steps 50 25 10 5 3 2] \
        [--seeds 0 1] [--out bench/out/first_frame]

Rows: the edit teacher at each step count (its guidance from the config's edit.teacher_*), and "cached edit", the
ground truth's frame 0 standing for an edit made once and reused (the `oracle` first frame: what re-editing a clip
with a stored frame 0 costs, i.e. nothing). Columns: frame 0 alone (success, PSNR on one-to-one edits, pattern
contrast on one-to-many ones, NFE, seconds per frame), then the clip that plug-and-play at 3 steps edits from it (the
committed world has no distilled student yet; `--lora` names one), read by the world's combined score. Held-out test
clips; mean ± spread over seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.models import EveModel  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402
from eve.worlds.shapes.data import held_out_items  # noqa: E402
from eve.worlds.shapes.evaluate import Evaluator, Method  # noqa: E402
from eve.worlds.shapes.measure import clip_metrics  # noqa: E402

DEFAULT_CONFIG = ROOT / "data" / "shapes" / "teachers" / "eve.yaml"


def frame_metrics(frame: torch.Tensor, it) -> dict:
    """Frame 0 of an edit [3, S, S] against the ground truth's frame 0: the world's clip metrics of a one-frame clip
    (success, PSNR where a pixel target exists, pattern contrast; no warp to read in one frame)."""
    m = clip_metrics(frame[None], it.task, it.source, it.target, it.added)
    return {f"f0 {k}": v for k, v in m.items() if k in ("success", "psnr", "contrast")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--clips", type=int, default=70)
    ap.add_argument("--steps", type=int, nargs="+", default=[50, 25, 10, 5, 3, 2])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--clip-steps", type=int, default=3, help="steps of the clip edit after frame 0")
    ap.add_argument("--clip-guidance", type=float, nargs=2, default=[3.0, 1.5],
                    help="text and image guidance of the clip edit (plug-and-play's best in bench/world/gates.py's sweep)")
    ap.add_argument("--lora", help="a student checkpoint for the clip edit (default: plug-and-play)")
    ap.add_argument("--out", default="bench/out/first_frame")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)

    cfg = load_config(args.config, args.overrides)
    e = cfg.edit
    torch.manual_seed(0)
    model = EveModel.from_config(cfg.model)
    items = held_out_items(args.clips)
    clip = Method("clip", "clip", args.clip_steps, lora=args.lora, text_scale=args.clip_guidance[0],
                  image_scale=args.clip_guidance[1])
    rows = []
    for seed in args.seeds:
        for steps in [*args.steps, None]:
            name = f"edit teacher, {steps} steps" if steps else "cached edit (ground truth's frame 0)"
            ev = Evaluator(model, teacher_steps=steps or 1, teacher_guidance=e.teacher_guidance,
                           teacher_image_guidance=e.teacher_image_guidance, spacing=e.timestep_spacing)
            t0 = time.perf_counter()
            f1 = ev.first_frames(items, seed) if steps else ev.oracle_first_frames(items)
            seconds = (time.perf_counter() - t0) / len(items)
            frames = model.decode_video(f1[:, None])[:, 0].clamp(-1, 1).cpu()
            clip_rows = ev.run(clip if steps else Method("clip", "clip", clip.steps, lora=clip.lora, first="oracle",
                                                         text_scale=clip.text_scale, image_scale=clip.image_scale),
                               items, f1, seed)
            for it, frame, c in zip(items, frames, clip_rows):
                rows.append({"first frame": name, "seed": seed, "f0 nfe": ev.f1_nfe if steps else 0,
                             "f0 s/frame": seconds, **frame_metrics(frame, it), "clip combined": c["combined"],
                             "clip success": c["success"], "clip warp": c["warp"]})
            print(f"seed {seed}: {name} done", file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    metrics = [c for c in df.columns if c not in ("first frame", "seed")]
    per_seed = df.groupby(["first frame", "seed"], sort=False)[metrics].mean()
    mean = per_seed.groupby("first frame", sort=False).mean()
    spread = per_seed.groupby("first frame", sort=False).std().fillna(0.0)
    table = mean.astype(object)
    for c in metrics:
        table[c] = [f"{a:.0f}" if c == "f0 nfe" else f"{a:.3f}" if c == "f0 s/frame" else f"{a:.3f} ± {b:.3f}"
                    for a, b in zip(mean[c], spread[c])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    text = (f"{len(items)} held-out clips, seeds {args.seeds}; frame 0 at the config's teacher guidance "
            f"({e.teacher_guidance} / {e.teacher_image_guidance}); clip: {clip.steps} steps at "
            f"{clip.text_scale} / {clip.image_scale}, {'LoRA ' + args.lora if args.lora else 'plug-and-play'}\n\n"
            + markdown(table))
    (out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
