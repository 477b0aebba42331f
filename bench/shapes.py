"""The shapes-world benchmark: every method against the ground truth, per task and overall, over several seeds.

    python bench/shapes.py --student runs/shapes-fdd/ckpt-000400 [--ablation "w/o SDS=runs/...ckpt"] \
        [--teachers data/shapes/teachers] [--clips 100] [--seeds 0 1] [--k 3] [--many 10] [--long-clips 20]

Prints markdown tables (overall: mean ± spread over seeds; per task: combined score) and writes, under --out,
results.csv (every item), tables.md, one grid video per task (input | ground truth | each method, frames in time)
and grid_<task>.png (rows = those clips, columns = frames). Metric definitions: eve/worlds/shapes/evaluate.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.data.video import write_video  # noqa: E402
from eve.models import EveModel  # noqa: E402
from eve.tasks import TASKS  # noqa: E402
from eve.train.samples import grid_image  # noqa: E402
from eve.worlds.shapes import world as W  # noqa: E402
from eve.worlds.shapes.data import held_out_items  # noqa: E402
from eve.worlds.shapes.evaluate import Evaluator, Method, markdown, summarise  # noqa: E402


def methods(args) -> list[Method]:
    k, n = args.k, args.many
    out = [Method(f"edit teacher, per frame ({n} steps)", "edit_teacher", n),
           Method(f"video teacher from f1 ({n} steps)", "video_teacher", n),
           Method(f"plug-and-play ({k} steps)", "clip", k),
           Method(f"plug-and-play ({n} steps)", "clip", n)]
    if args.student:
        out += [Method(f"FDD student ({k} steps)", "clip", k, args.student),
                Method(f"FDD student ({n} steps)", "clip", n, args.student)]
    for spec in args.ablation:
        name, path = spec.split("=", 1)
        out.append(Method(f"{name} ({k} steps)", "clip", k, path))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teachers", default=str(ROOT / "data" / "shapes" / "teachers"))
    ap.add_argument("--student", help="the FDD checkpoint (folder or LoRA file)")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=CHECKPOINT")
    ap.add_argument("--clips", type=int, default=140, help="test clips (each with one task, 20 per task by default)")
    ap.add_argument("--all-tasks", action="store_true", help="edit every clip with all seven tasks (7x the cost)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--many", type=int, default=10)
    ap.add_argument("--teacher-guidance", type=float, default=None)
    ap.add_argument("--long-clips", type=int, default=20, help="clips edited at 24 frames through the windows (0: none)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "shapes"))
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    cfg = load_config(Path(args.teachers) / "eve.yaml")
    model = EveModel.from_config(cfg.model)
    e = cfg.edit
    ev = Evaluator(model, teacher_steps=e.teacher_steps,
                   teacher_guidance=args.teacher_guidance or e.teacher_guidance,
                   teacher_image_guidance=e.teacher_image_guidance, video_guidance=cfg.fdd.video_guidance,
                   spacing=e.timestep_spacing, batch=args.batch)
    items = held_out_items(args.clips, all_tasks=args.all_tasks)
    first_of_task = {t: next(it.clip for it in items if it.task == t) for t in TASKS}
    ev.keep = {(c, t) for t, c in first_of_task.items()}
    rows, t0 = [], time.perf_counter()
    for seed in args.seeds:
        f1 = ev.first_frames(items, seed)
        for m in methods(args):
            rows += ev.run(m, items, f1, seed)
            print(f"seed {seed}: {m.name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        if args.long_clips:
            long_items = [it for it in items if it.clip < args.long_clips]
            f1_long = f1[: len(long_items)]
            for name, lora in [("plug-and-play", None)] + ([("FDD student", args.student)] if args.student else []):
                m = Method(f"{name}, 24-frame clip, windows ({args.k} steps)", "clip", args.k, lora, frames=24)
                rows += ev.run(m, long_items, f1_long, seed)
    overall, per_task = summarise(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    per = "x 7 tasks" if args.all_tasks else f"({args.clips // 7} per task)"
    text = (f"### Shapes world: {args.clips} test clips {per}, seeds {args.seeds} (mean ± spread over seeds)\n\n"
            + markdown(overall) + "\n\n### Combined score per task (mean over seeds)\n\n"
            + markdown(per_task) + "\n")
    (out / "tables.md").write_text(text)
    print(text)
    names = [m.name for m in methods(args)]
    for task, clip in first_of_task.items():
        it = next(i for i in items if i.clip == clip and i.task == task)
        clips = [W.render_video(it.source, 8), W.render_video(it.target, 8)]
        clips += [ev.kept[(n, clip, task)] for n in names if (n, clip, task) in ev.kept]
        strip = torch.cat(clips, dim=-1)  # [F, 3, S, S * rows]: side by side
        big = torch.nn.functional.interpolate(strip, scale_factor=8, mode="nearest")
        write_video(out / f"grid_{task}.gif", big, 4)
        grid_image(clips, scale=6).save(out / f"grid_{task}.png")
    (out / "grid_rows.txt").write_text("\n".join(["input", "ground truth"] + names) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
