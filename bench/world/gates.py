"""Gates of the shapes world (issue 9): does the proving ground have the paper's premises, before any FDD run?

    python bench/world/gates.py [--config configs/shapes/fdd.yaml] [--clips 70] [--seed 0] [--k 3] [--many 25] \
        [--probe-batches 30] [--probe-epochs 15] [--out bench/out/gates]

The FDD config names the teachers (model.*), the guidance FDD distils with (fdd.*_guidance: every teacher row runs
at it) and the discriminators the probe trains (disc.*).

1. misalignment: plug-and-play at k steps, from its own edited first frame, is below the per-frame edit teacher
   (many steps) on edit success by at least 0.10 (neither is handed the ground truth), or plug-and-play's warp
   error is at least 1.5x the video teacher's (both from the oracle first frame);
2. few-step failure: each teacher at k steps is worse than at many steps by at least 3 dB PSNR on the one-to-one
   edits, or loses at least 0.15 of its pattern contrast on the one-to-many ones (parser-read);
3. a critic can see it: fresh discriminator heads on the world's critic features separate the edit teacher's
   k-step samples from its many-step samples with held-out accuracy >= 0.8 (bench/world/disc_probe.py's machinery). The
   same heads on raw pixel patches are the control: heads on pixels that do no better say the features are not
   what hides the difference. Also printed (not gated): D_e's held-out accuracy by task, and its paired accuracy
   (many-step above few-step within the same frame): paired well above unpaired says the difference is there, and
   what hides it from a threshold is the variety between scenes. Two more controls (bench/world/disc_probe.py
   --controls): the detail control (no learned critic: one hand-made number per frame, the grain's strength, and a
   threshold per task) says whether the difference is in the samples; the blur control (fresh heads on the
   features, the many-step samples against themselves blurred) says whether the heads see an obvious difference.

Prints each gate's figures and PASS/FAIL, and writes gates.md, results.csv and grid_<task>.png (one held-out
texture, background, style and remove edit; a labelled row per method) under --out. Clip rows use held-out test
clips with the oracle first frame (the ground truth's frame 0), so they compare adapters, not first-frame edits;
one plug-and-play row edits its first frame itself, as a user's run does. Plug-and-play runs at its best guidance
(a sweep on validation clips), the teachers at the FDD config's.
The thresholds were fixed before any teacher was trained. The gates are diagnostics now, printed beside FDD's results:
the world is frozen and no gate blocks an FDD run (issue 32; docs/shapes-fdd.md).
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

from disc_probe import EPOCHS, teacher_probe  # noqa: E402  (bench/world/ is on sys.path as this script's folder)
from eve.config import load_config  # noqa: E402
from eve.models import EveModel  # noqa: E402
from eve.train.samples import grid_image  # noqa: E402
from eve.worlds.shapes import world as W  # noqa: E402
from eve.worlds.shapes.data import held_out_items  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402
from eve.worlds.shapes.evaluate import Evaluator, Method, best_guidance, summarise  # noqa: E402
from eve.worlds.shapes.world import ONE_TO_MANY  # noqa: E402

SUCCESS_GAP, WARP_RATIO, PSNR_GAP, CONTRAST_GAP, PROBE_ACC = 0.10, 1.5, 3.0, 0.15, 0.8


def gate_rows(args, cfg) -> pd.DataFrame:
    model = EveModel.from_config(cfg.model)
    e, f = cfg.edit, cfg.fdd
    ev = Evaluator(model, teacher_steps=e.teacher_steps, teacher_guidance=f.edit_guidance,
                   teacher_image_guidance=f.edit_image_guidance, spacing=e.timestep_spacing, batch=args.batch)
    edit = dict(text_scale=f.edit_guidance, image_scale=f.edit_image_guidance)
    k, n = args.k, args.many
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    ts, ims = args.pnp_guidance or best_guidance(ev, Method("plug-and-play", "clip", k, first="oracle"), log=log)
    if args.sweep_teacher:  # shows whether the FDD config's edit guidance is the edit teacher's best
        best_guidance(ev, Method(f"edit teacher ({n} steps)", "edit_teacher", n), log=log)
    pnp = dict(text_scale=ts, image_scale=ims)
    methods = [Method("ground truth through the autoencoder", "codec", 0),
               Method(f"edit teacher ({n} steps)", "edit_teacher", n, **edit),
               Method(f"edit teacher ({k} steps)", "edit_teacher", k, **edit),
               Method(f"video teacher ({n} steps)", "video_teacher", n, first="oracle", text_scale=f.video_guidance),
               Method(f"video teacher ({k} steps)", "video_teacher", k, first="oracle", text_scale=f.video_guidance),
               Method(f"plug-and-play ({k} steps)", "clip", k, first="oracle", **pnp),
               Method(f"plug-and-play ({k} steps, edited f1)", "clip", k, first="edited", **pnp),
               Method(f"plug-and-play ({n} steps)", "clip", n, first="oracle", **pnp)]
    items = held_out_items(args.clips)
    shown = {t: next(it for it in items if it.task == t) for t in ("texture", "background", "style", "remove")}
    ev.keep = {(it.clip, it.task) for it in shown.values()}
    rows, t0 = [], time.perf_counter()
    edited_f1 = ev.first_frames(items, args.seed)
    for m in methods:
        rows += ev.run(m, items, edited_f1, args.seed)
        print(f"{m.name} done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    for task, it in shown.items():  # one picture per kind of edit: what the figures mean
        clips = [W.render_video(it.source), W.render_video(it.target)] + [ev.kept[(m.name, it.clip, task)]
                                                                          for m in methods]
        labels = ["input", "ground truth"] + [m.name for m in methods]
        grid_image(clips, scale=4, labels=labels).save(Path(args.out) / f"grid_{task}.png")
    return pd.DataFrame(rows)


def check(df: pd.DataFrame, k: int, n: int) -> list[tuple[str, str, bool]]:
    """(gate, figures, passed) from the per-item rows."""
    mean = df.groupby("method").mean(numeric_only=True)
    one = df[~df.task.isin(ONE_TO_MANY)].groupby("method")["psnr"].mean()
    pat = df[df.task.isin(ONE_TO_MANY)].groupby("method")["contrast"].mean()  # every edit that draws a pattern
    et, etk = f"edit teacher ({n} steps)", f"edit teacher ({k} steps)"
    vt, vtk = f"video teacher ({n} steps)", f"video teacher ({k} steps)"
    pnp, pnp_own = f"plug-and-play ({k} steps)", f"plug-and-play ({k} steps, edited f1)"
    gap = mean.success[et] - mean.success[pnp_own]
    ratio = mean.warp[pnp] / max(mean.warp[vt], 1e-9)
    out = [("1. misalignment",
            f"success: edit teacher {mean.success[et]:.3f}, plug-and-play from its edited f1 "
            f"{mean.success[pnp_own]:.3f} (gap {gap:.3f}, "
            f"needs >= {SUCCESS_GAP}); warp: plug-and-play {mean.warp[pnp]:.4f}, video teacher {mean.warp[vt]:.4f} "
            f"(ratio {ratio:.2f}, needs >= {WARP_RATIO})", gap >= SUCCESS_GAP or ratio >= WARP_RATIO)]
    for name, many, few in (("edit teacher", et, etk), ("video teacher", vt, vtk)):
        d_psnr, d_con = one[many] - one[few], pat[many] - pat[few]
        out.append((f"2. few-step failure, {name}",
                    f"psnr {one[many]:.2f} -> {one[few]:.2f} dB ({d_psnr:.2f}, needs >= {PSNR_GAP}); pattern contrast "
                    f"{pat[many]:.3f} -> {pat[few]:.3f} ({d_con:.3f}, needs >= {CONTRAST_GAP})",
                    d_psnr >= PSNR_GAP or d_con >= CONTRAST_GAP))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes" / "fdd.yaml"))
    ap.add_argument("--clips", type=int, default=70, help="held-out test clips (one task each, 10 per task)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--many", type=int, default=25)
    ap.add_argument("--batch", type=int, default=70)
    ap.add_argument("--probe-batches", type=int, default=30,
                    help="micro-batches of clips the probe draws; a fifth (at least 1) are held out; 0: skip gate 3")
    ap.add_argument("--probe-epochs", type=int, default=EPOCHS, help="passes of the probe's heads over its batches")
    ap.add_argument("--sweep-teacher", action="store_true", help="also print the edit teacher's guidance sweep")
    ap.add_argument("--pnp-guidance", type=float, nargs=2, default=None, metavar=("TEXT", "IMAGE"),
                    help="plug-and-play's guidance (default: the best of a sweep on validation clips)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "gates"))
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (e.g. model.* folders)")
    args = ap.parse_args(argv)
    if not Path(args.config).is_file():
        ap.error(f"--config: {args.config} does not exist")
    if args.probe_batches == 1 or args.probe_batches < 0:
        ap.error(f"--probe-batches must be 0 (no gate 3) or at least 2 (one held out), got {args.probe_batches}")
    if args.probe_epochs < 1:
        ap.error(f"--probe-epochs must be at least 1, got {args.probe_epochs}")
    if args.clips < 7 or not 1 <= args.k < args.many:
        ap.error(f"need --clips >= 7 and 1 <= --k < --many, got {args.clips}, {args.k}, {args.many}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing to {out}", file=sys.stderr)
    torch.manual_seed(0)
    cfg = load_config(args.config, args.overrides)
    df = gate_rows(args, cfg)
    df.to_csv(out / "results.csv", index=False)
    overall, per_task = summarise(df.to_dict("records"))
    gates = check(df, args.k, args.many)
    if args.probe_batches:
        acc = teacher_probe(args.config, k=args.k, batches=args.probe_batches, epochs=args.probe_epochs, seed=args.seed,
                            overrides=[*args.overrides, f"fdd.real_steps={args.many}"])
        f, px, dc, bl = acc["features"], acc["pixels"], acc["detail"], acc["blur"]
        gates.append(("3. a critic can see it",
                      f"held-out accuracy D_e {f['edit']:.3f}, D_v {f['video']:.3f} (train {f['train edit']:.3f}, "
                      f"{f['train video']:.3f}; needs D_e >= {PROBE_ACC}); control, the same heads on raw pixel "
                      f"patches: D_e {px['edit']:.3f}, D_v {px['video']:.3f} (train {px['train edit']:.3f}, "
                      f"{px['train video']:.3f}); paired (held-out frames whose many-step sample the critic scores "
                      f"above the few-step one of the same frame): D_e {f['edit paired']:.3f} (pixels "
                      f"{px['edit paired']:.3f}); D_e by task: "
                      + ", ".join(f"{t} {a:.2f}" for t, a in f["edit by task"].items())
                      + f"; detail control (one hand-made number per frame, a threshold per task): D_e "
                      f"{dc['edit']:.3f}, D_v {dc['video']:.3f}; blur control (fresh heads on the features, the "
                      f"many-step samples against themselves blurred): D_e {bl['edit']:.3f}, D_v {bl['video']:.3f} "
                      f"(train {bl['train edit']:.3f}, {bl['train video']:.3f})", f["edit"] >= PROBE_ACC))
    text = (f"### Gates: {args.clips} held-out clips, seed {args.seed}, oracle first frame\n\n"
            + "\n".join(f"- **{'PASS' if ok else 'FAIL'}** {g}: {fig}" for g, fig, ok in gates)
            + "\n\n" + markdown(overall) + "\n\n" + markdown(per_task) + "\n")
    (out / "gates.md").write_text(text)
    print(text)
    print(f"wrote {out / 'gates.md'} and {out / 'results.csv'}", file=sys.stderr)
    return 0 if all(ok for _, _, ok in gates) else 1


if __name__ == "__main__":
    sys.exit(main())
