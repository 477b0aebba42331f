"""How does every method score against the shapes world's ground truth? Per task and overall, over several seeds.

    python bench/world/shapes.py --student data/shapes/student [--ablation "w/o SDS=runs/...ckpt"] \
        [--teachers data/shapes/teachers] [--clips 105] [--seeds 0 1] [--k 3] [--many 25] [--long-clips 21] \
        [--reuse bench/out/shapes/results.csv ...] [--only "FDD student" ...]

Rows: the per-frame edit teacher, the video teacher, plug-and-play (k and many steps), the student (k and many),
each ablation, and the sliding-window long clips; every clip row from the edited first frame and, for plug-and-play
and the student, also from the oracle one (the ground truth's frame 0). Guidance: the teachers use the guidance of
the FDD config they distil with; plug-and-play and the student run at the scales in --pnp-guidance / 1 (a student
distilled from guided teachers needs none), so NFE and seconds per clip are read with the quality.

Prints markdown tables (overall: mean ± spread over seeds; per task: combined score) and writes, under --out,
results.csv (every item), tables.md, one grid video per task (input | ground truth | each method, frames in time)
and grid_<task>.png (rows = those clips, columns = frames). Metric definitions: eve/worlds/shapes/evaluate.py.

--reuse takes a method's rows from an earlier results.csv instead of running it again, when that file holds the
same method with the same weights and teachers folder for every (seed, clip, task) asked for: adding a row to the
table then costs that row alone; several files may be given (runs made side by side). --only runs just the methods
whose names contain one of its strings (the others come from --reuse, or are left out), so one set of rows can be
computed beside another on a second core. The grids show only the methods run this time. Retrained teachers in the
same folder are not detected: do not reuse across them.
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
from eve.errors import EveError  # noqa: E402
from eve.train.validation import chosen_checkpoint  # noqa: E402
from eve.data.video import write_video  # noqa: E402
from eve.models import EveModel  # noqa: E402
from eve.tasks import TASKS  # noqa: E402
from eve.train.samples import grid_image  # noqa: E402
from eve.worlds.shapes import world as W  # noqa: E402
from eve.worlds.shapes.data import held_out_items  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402
from eve.worlds.shapes.evaluate import Evaluator, Method, best_guidance, summarise  # noqa: E402


def scales(g: tuple[float, float]) -> str:
    return f"guidance {g[0]:g}/{g[1]:g}"


def methods(args, cfg) -> list[Method]:
    """Every row, like for like: plug-and-play and the student each at guidance 1/1 (one network pass a step) and at
    their best guidance from the validation sweep (up to three passes a step), NFE beside each."""
    k, n, f = args.k, args.many, cfg.fdd
    one, best = (1.0, 1.0), tuple(args.pnp_guidance)

    def pnp(steps: int, g, first: str = "edited") -> Method:
        oracle = ", oracle f1" if first == "oracle" else ""
        return Method(f"plug-and-play{oracle} ({steps} steps, {scales(g)})", "clip", steps, first=first,
                      text_scale=g[0], image_scale=g[1])

    out = [Method("ground truth through the autoencoder", "codec", 0),
           Method(f"edit teacher, per frame ({n} steps)", "edit_teacher", n, text_scale=f.edit_guidance,
                  image_scale=f.edit_image_guidance),
           Method(f"video teacher from f1 ({n} steps)", "video_teacher", n, text_scale=f.video_guidance)]
    out += [pnp(k, one), pnp(k, best), pnp(n, one), pnp(n, best), pnp(k, best, "oracle")]
    if args.student:
        sbest = tuple(args.student_guidance)

        def student(steps: int, g, first: str = "edited") -> Method:
            oracle = ", oracle f1" if first == "oracle" else ""
            return Method(f"FDD student{oracle} ({steps} steps, {scales(g)})", "clip", steps, args.student,
                          first=first, text_scale=g[0], image_scale=g[1])

        out += [student(k, one)] + ([student(k, sbest)] if sbest != one else [])
        out += [student(n, one), student(k, one, "oracle")]
    for spec in args.ablation:
        name, path = spec.split("=", 1)
        out.append(Method(f"{name} ({k} steps, {scales(one)})", "clip", k, path))
    return list({m.name: m for m in out}.values())  # the best guidance may be 1/1: that row once


def chosen(path: str | None) -> str | None:
    """A checkpoint as given, or for a run folder (it holds metrics.jsonl) its best-validated checkpoint."""
    if path is None:
        return None
    ckpt, row = chosen_checkpoint(path)
    if row is None:
        return path
    print(f"{path}: {ckpt.name}, the best val_combined ({row['val_combined']:.3f}) of its validated checkpoints",
          file=sys.stderr)
    return str(ckpt)


def reused(prev: pd.DataFrame | None, m: Method, teachers: str, seed: int, items) -> list[dict] | None:
    """The earlier rows of method m for this seed, if they cover exactly these items with the same weights."""
    if prev is None:
        return None
    hit = prev[(prev["method"] == m.name) & (prev["weights"] == (m.lora or "")) & (prev["teachers"] == teachers)
               & (prev["seed"] == seed)].drop_duplicates(["clip", "task"])  # a row scored in two files: once
    if sorted(zip(hit["clip"], hit["task"])) != sorted((it.clip, it.task) for it in items):
        return None
    return hit.to_dict("records")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teachers", default=str(ROOT / "data" / "shapes" / "teachers"))
    ap.add_argument("--student", help="the FDD checkpoint (folder or LoRA file)")
    ap.add_argument("--ablation", action="append", default=[], metavar="NAME=CHECKPOINT")
    ap.add_argument("--clips", type=int, default=105, help="test clips (each with one task, 15 per task by default)")
    ap.add_argument("--all-tasks", action="store_true", help="edit every clip with all seven tasks (7x the cost)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--many", type=int, default=25)
    ap.add_argument("--pnp-guidance", type=float, nargs=2, default=None, metavar=("TEXT", "IMAGE"),
                    help="plug-and-play's guidance scales (default: the best of a sweep on validation clips)")
    ap.add_argument("--student-guidance", type=float, nargs=2, default=None, metavar=("TEXT", "IMAGE"),
                    help="the student's guidance scales beside 1/1 (default: the best of a sweep on validation clips)")
    ap.add_argument("--long-clips", type=int, default=21, help="clips edited at 24 frames through the windows (0: none)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "shapes"))
    ap.add_argument("--reuse", metavar="RESULTS_CSV", nargs="+",
                    help="take methods already scored there instead of running them")
    ap.add_argument("--only", metavar="TEXT", nargs="+",
                    help="run only the methods whose names contain one of these (the rest: --reuse or left out)")
    args = ap.parse_args(argv)
    prev = None
    for path in args.reuse or ():
        if not Path(path).is_file():
            ap.error(f"--reuse: {path} is not a file")
        try:
            table = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            ap.error(f"--reuse: {path} is not a CSV file ({str(e).strip()})")
        if not {"method", "weights", "teachers", "seed", "clip", "task"} <= set(table.columns):
            ap.error(f"--reuse: {path} is not a results.csv of this benchmark (it lacks the weights/teachers columns)")
        table[["weights", "teachers"]] = table[["weights", "teachers"]].fillna("")
        prev = table if prev is None else pd.concat([prev, table], ignore_index=True)
    yaml = Path(args.teachers) / "eve.yaml"
    if not yaml.is_file():
        ap.error(f"--teachers: {yaml} does not exist (python -m eve.worlds.shapes train-teachers writes it)")
    for spec in ([args.student] if args.student else []) + [a.split("=", 1)[-1] for a in args.ablation]:
        if not Path(spec).exists():
            ap.error(f"checkpoint {spec} does not exist (train one: python train_fdd.py --config configs/shapes/fdd.yaml)")
    try:  # a run folder stands for its checkpoint with the best validation score (never chosen on the test set)
        args.student = chosen(args.student)
        args.ablation = [f"{a.split('=', 1)[0]}={chosen(a.split('=', 1)[1])}" for a in args.ablation]
    except EveError as e:
        ap.error(str(e))
    if args.clips < 7 or not 1 <= args.k < args.many:
        ap.error(f"need --clips >= 7 and 1 <= --k < --many, got {args.clips}, {args.k}, {args.many}")
    out = Path(args.out)
    print(f"writing to {out}", file=sys.stderr)
    teachers = str(Path(args.teachers).resolve())
    torch.manual_seed(0)
    cfg = load_config(yaml)
    model = EveModel.from_config(cfg.model)
    e = cfg.edit
    ev = Evaluator(model, teacher_steps=e.teacher_steps, teacher_guidance=cfg.fdd.edit_guidance,
                   teacher_image_guidance=cfg.fdd.edit_image_guidance, spacing=e.timestep_spacing, batch=args.batch)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.pnp_guidance is None:
        args.pnp_guidance = best_guidance(ev, Method("plug-and-play", "clip", args.k, first="oracle"), log=log)
    if args.student and args.student_guidance is None:
        args.student_guidance = best_guidance(ev, Method("FDD student", "clip", args.k, args.student, first="oracle"),
                                              log=log)
    items = held_out_items(args.clips, all_tasks=args.all_tasks)
    first_of_task = {t: next(it.clip for it in items if it.task == t) for t in TASKS}
    ev.keep = {(c, t) for t, c in first_of_task.items()}
    rows, t0 = [], time.perf_counter()
    for seed in args.seeds:
        f1 = None
        long_items = [it for it in items if it.clip < args.long_clips]
        todo = [(m, items) for m in methods(args, cfg)]
        if args.long_clips:
            ts, ims = args.pnp_guidance
            todo.append((Method(f"plug-and-play, 24-frame clip, windows ({args.k} steps, {scales((ts, ims))})", "clip",
                                args.k, frames=24, text_scale=ts, image_scale=ims), long_items))
            if args.student:
                todo.append((Method(f"FDD student, 24-frame clip, windows ({args.k} steps, guidance 1/1)", "clip",
                                    args.k, args.student, frames=24), long_items))
        for m, its in todo:
            earlier = reused(prev, m, teachers, seed, its)
            if earlier is not None:
                rows += earlier
                print(f"seed {seed}: {m.name} reused", file=sys.stderr)
                continue
            if args.only and not any(text in m.name for text in args.only):
                continue
            f1 = ev.first_frames(items, seed) if f1 is None else f1
            rows += [r | {"weights": m.lora or "", "teachers": teachers} for r in ev.run(m, its, f1[: len(its)], seed)]
            print(f"seed {seed}: {m.name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    overall, per_task = summarise(rows)
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / "results.csv", index=False)
    per = "x 7 tasks" if args.all_tasks else f"({args.clips // 7} per task)"
    text = (f"### Shapes world: {args.clips} test clips {per}, seeds {args.seeds} (mean ± spread over seeds)\n\n"
            + markdown(overall) + "\n\n### Combined score per task (mean over seeds)\n\n"
            + markdown(per_task) + "\n")
    (out / "tables.md").write_text(text)
    print(text)
    names = [m.name for m in methods(args, cfg)]
    for task, clip in first_of_task.items():
        it = next(i for i in items if i.clip == clip and i.task == task)
        clips = [W.render_video(it.source), W.render_video(it.target)]
        shown = [n for n in names if (n, clip, task) in ev.kept]
        clips += [ev.kept[(n, clip, task)] for n in shown]
        strip = torch.cat(clips, dim=-1)  # [F, 3, S, S * rows]: side by side
        big = torch.nn.functional.interpolate(strip, scale_factor=8, mode="nearest")
        write_video(out / f"grid_{task}.gif", big, 4)
        grid_image(clips, scale=6, labels=["input", "ground truth"] + shown).save(out / f"grid_{task}.png")
    (out / "grid_rows.txt").write_text("\n".join(["input", "ground truth"] + names) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
