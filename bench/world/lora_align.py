"""Does LoRA alignment keep both the edit and the style? In the shapes world (issue 14, paper §4.4): the edit teacher
alone, plug-and-play (edit adapter + the style LoRA) and the aligned student, on held-out scenes, over seeds.

    python bench/world/lora_align.py --lora runs/shapes/style/lora \
        --checkpoints runs/shapes/lora-align-s0/ckpt-000300 runs/shapes/lora-align-s1/ckpt-000300 [--scenes 30]

The input of each held-out item is its source scene's frame 0 in the LoRA's style (eve/worlds/shapes/lora_align.py);
every method edits it through the one image-editing path (eve.editing.pipeline.edit_first_frame). The undistilled
methods (edit teacher, plug-and-play) run the edit teacher's sampler (edit.teacher_steps, its text and image
guidance); the aligned student runs its own (edit.steps, no guidance; and, as K-bin training allows, as many steps
as the teachers), one checkpoint per seed, the seed also
drawing the noise; the undistilled methods get the same seeds. Metrics (`lora_align.score`): edit success (the
world's parser, style-blind), style fidelity, combined (both). Prints markdown tables (overall: mean ± std over
seeds; per task: combined) and writes under --out results.csv, tables.md and grid.png (rows: one item per task;
columns: a style reference image | input | edit teacher | plug-and-play | aligned).
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
from eve.diffusion.timesteps import ddim_timesteps  # noqa: E402
from eve.editing.pipeline import edit_first_frame  # noqa: E402
from eve.models import EveModel  # noqa: E402
from eve.models.composed import Cond, Role  # noqa: E402
from eve.models.lora import has_lora  # noqa: E402
from eve.tasks import task_id  # noqa: E402
from eve.train.samples import grid_image  # noqa: E402
from eve.worlds.shapes import lora_align as L  # noqa: E402
from eve.worlds.shapes import world as W  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402


@torch.no_grad()
def run_method(model: EveModel, items, *, role: Role, steps: int, scales: tuple[float, float], seed: int,
               spacing: str, batch: int = 50) -> torch.Tensor:
    """Edited frame 0 of every item, pixels [N, 3, S, S]."""
    gen = torch.Generator().manual_seed(seed)
    ts = ddim_timesteps(steps, model.schedule.num_train_timesteps, spacing)
    out = []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        src = torch.stack([L.stylise(W.render(it.source, 0)) for it in chunk])[:, None]
        cap = model.encode_text([it.caption for it in chunk], role)
        ins = model.encode_text([it.instruction for it in chunk], role)
        base = Cond(cap, ins, task=torch.tensor([task_id(it.task) for it in chunk]))
        first = edit_first_frame(model, src, base, steps=ts, text_scale=scales[0], image_scale=scales[1],
                                 generator=gen, role=role)
        out.append(model.decode_video(first[:, None])[:, 0].clamp(-1, 1).cpu())
    return torch.cat(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes" / "lora_align.yaml"))
    ap.add_argument("--lora", required=True, help="the style LoRA (eve.train.dreambooth's output)")
    ap.add_argument("--checkpoints", nargs="+", required=True, help="aligned checkpoints, one per seed")
    ap.add_argument("--scenes", type=int, default=30, help="held-out scenes (5 edits each)")
    ap.add_argument("--reference", default=str(ROOT / "runs" / "shapes" / "style" / "images" / "000.png"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "lora_align"))
    args = ap.parse_args(argv)
    cfg = load_config(args.config, [f"model.lora={Path(args.lora).resolve()}"])
    e = cfg.edit
    model = EveModel.from_config(cfg.model)
    items = L.test_items(args.scenes)
    teacher = (e.teacher_steps, (e.teacher_guidance, e.teacher_image_guidance))
    rows, shown = [], {}
    for seed, ckpt in enumerate(args.checkpoints):
        for name, role, (steps, scales) in (
                (f"edit teacher ({teacher[0]} steps)", Role.EDIT_TEACHER, teacher),
                (f"plug-and-play ({teacher[0]} steps)", Role.PLUG_AND_PLAY, teacher),
                (f"aligned student ({e.steps} steps)", Role.STUDENT, (e.steps, (e.guidance, e.image_guidance))),
                (f"aligned student ({teacher[0]} steps)", Role.STUDENT, (teacher[0], (e.guidance, e.image_guidance)))):
            if role is Role.STUDENT and not has_lora(model.unet):
                model.load_lora(ckpt)
            t0 = time.perf_counter()
            frames = run_method(model, items, role=role, steps=steps, scales=scales, seed=seed,
                                spacing=e.timestep_spacing)
            secs = (time.perf_counter() - t0) / len(items)
            for it, f in zip(items, frames):
                rows.append({"method": name, "seed": seed, "task": it.task, "clip": it.clip, "s_per_image": secs}
                            | L.score(f, it))
            if seed == 0:
                shown[name] = frames
            print(f"seed {seed} {name}: {pd.DataFrame(rows[-len(items):])['combined'].mean():.3f}", flush=True)
        model.unload_lora()
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "results.csv", index=False)
    per_seed = df.groupby(["method", "seed"], sort=False)[["success", "style", "combined"]].mean()
    overall = per_seed.groupby("method", sort=False).agg(["mean", "std"])
    table = pd.DataFrame({m: {"edit success": f"{overall.loc[m, ('success', 'mean')]:.3f} ± "
                                              f"{overall.loc[m, ('success', 'std')]:.3f}",
                              "style fidelity": f"{overall.loc[m, ('style', 'mean')]:.3f} ± "
                                                f"{overall.loc[m, ('style', 'std')]:.3f}",
                              "combined": f"{overall.loc[m, ('combined', 'mean')]:.3f} ± "
                                          f"{overall.loc[m, ('combined', 'std')]:.3f}",
                              "s / image": f"{df[df.method == m].s_per_image.mean():.3f}"}
                          for m in overall.index}).T
    tasks = df.pivot_table(index="method", columns="task", values="combined", sort=False)[list(L.TASKS)]
    table.index.name = "method"
    text = (f"{len(items)} held-out items ({args.scenes} scenes x {len(L.TASKS)} edits), seeds "
            f"{list(range(len(args.checkpoints)))}, mean ± std over seeds\n\n" + markdown(table) +
            "\n\ncombined score per task\n\n" + markdown(tasks) + "\n")
    print(text)
    (out / "tables.md").write_text(text)
    picks = [next(i for i, it in enumerate(items) if it.task == t) for t in L.TASKS]
    from eve.data.video import read_video

    ref = read_video(args.reference).frames[0] if Path(args.reference).is_file() else torch.zeros(3, W.SIZE, W.SIZE)
    grid = [torch.stack([ref, L.stylise(W.render(items[i].source, 0))] + [shown[m][i] for m in shown]) for i in picks]
    grid_image(grid, scale=3, labels=[items[i].instruction for i in picks]).save(out / "grid.png")
    print(f"wrote {out / 'tables.md'}, {out / 'grid.png'} (columns: reference | input | "
          + " | ".join(shown) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
