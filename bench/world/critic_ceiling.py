"""Gate 3's ceiling in the shapes world: can the probe's heads see the most a few-step sampler could lose?

    python bench/world/critic_ceiling.py [--config configs/shapes/fdd.yaml] [--keep 0 0.74] [--batches 30] \
        [--held-out 6] [--epochs 60] [--seed 0] [--data-seed 0] [key=value ...]

Gate 3 asks fresh discriminator heads to tell the teachers' 3-step samples from their 25-step ones; the 3-step
samples keep less of the world's grain (about 0.74 of it; docs/proving-ground.md, Gates). This asks the same heads an easier
question that bounds the grain part of that one: the reals are the ground-truth edits, the fakes the very same
frames with the grain at a fraction `--keep` of its amplitude and nothing else changed (both through the world's
autoencoder, as the teachers' samples are decoded). keep 0 is the most any sampler could lose. The heads are
gate 3's (the config's disc.*, trained as bench/world/disc_probe.py trains them, on the same micro-batches of the FDD
data, with D_e handed the same input frames); the pixel-patch control and the detail control (no learning) run
beside them.

If the heads cannot separate keep 0 within gate 3's epochs, then at the world's grain amplitude no few-step loss
of grain, however complete, passes gate 3 with these heads: what could pass is a different critic, or a few-step
failure other than, or larger than, the grain's.

Prints one row per keep fraction and critic: held-out D_e and D_v accuracy after gate 3's epochs
(disc_probe.EPOCHS) and after --epochs; then, after --epochs, the paired D_e accuracy (held-out frames whose real
scores above its own fake) and the training D_e accuracy. The detail control has no epochs: one figure each.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes" / "fdd.yaml"))
    ap.add_argument("--keep", type=float, nargs="+", default=[0.0, 0.74],
                    help="the fakes' grain, as a fraction of the world's (1: the reals themselves)")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--held-out", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0, help="the probe's seed (micro-batch order, heads)")
    ap.add_argument("--data-seed", type=int, default=0,
                    help="the seed `python -m eve.worlds.shapes data` wrote the config's manifest with")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)
    if not all(0 <= k <= 1 for k in args.keep):
        ap.error(f"--keep fractions must be in [0, 1], got {args.keep}")
    if not 0 < args.held_out < args.batches:
        ap.error(f"--held-out must be between 1 and --batches - 1, got {args.held_out}")
    if args.epochs < 1:
        ap.error(f"--epochs must be at least 1, got {args.epochs}")
    return args


def world_items(manifest, rows, data_seed: int) -> list:
    """The world's items behind the manifest's rows (the data command writes items(seed, clips) in order, every
    task of a clip); a manifest the world did not write with that seed is refused by the instructions it holds."""
    from eve.tasks import TASKS
    from eve.worlds.shapes.data import items

    not_ours = f"{manifest} was not written by `python -m eve.worlds.shapes data --seed {data_seed}`"
    if len(rows) % len(TASKS):
        raise ValueError(f"{not_ours} ({len(rows)} rows, not {len(TASKS)} per clip)")
    its = items(data_seed, len(rows) // len(TASKS))
    for i, (it, row) in enumerate(zip(its, rows.itertuples())):
        if it.instruction != row.instruction:
            raise ValueError(f"{not_ours} (row {i}: instruction {row.instruction!r}, the world's {it.instruction!r})")
    return its


def draw_ground_truth(cfg, parts, its, *, n: int, seed: int, keep: float) -> list[tuple]:
    """The probe's micro-batches (disc_probe.micro_batches; no teacher sampled) with the reals the ground-truth
    edits and the fakes the same frames at `keep` of the grain, both through the autoencoder."""
    import torch
    from disc_probe import micro_batches
    from eve.worlds.shapes import world as W

    m, F = parts.model, cfg.model.num_frames
    codec = lambda videos: m.decode_video(m.encode_video(torch.stack(videos)))  # noqa: E731
    out = []
    with torch.no_grad():
        for _, raw, b in micro_batches(cfg, parts, n, seed, need_real=False, need_f1=False):
            idx = raw["index"].tolist()  # manifest rows
            real = codec([W.render_video(its[j].target, F) for j in idx])
            fake = codec([W.render_video(its[j].target, F, grain_scale=keep) for j in idx])
            out.append((b, fake, fake, real, real))
    return out


def main(argv=None) -> int:
    args = parse(argv)
    import pandas as pd
    import torch
    from disc_probe import EPOCHS, detail_control, fresh_heads, pixel_parts, probe
    from eve.config import load_config
    from eve.data.manifest import read_manifest
    from eve.errors import EveError
    from eve.train.loop import build_parts
    from eve.utils.tables import markdown

    try:
        cfg = load_config(args.config, args.overrides)
        if not cfg.fdd.use_adversarial:
            raise ValueError(f"{args.config}: fdd.use_adversarial=false: there are no discriminators to probe")
        its = world_items(cfg.data.manifest, read_manifest(cfg.data.manifest), args.data_seed)
    except (ValueError, EveError) as e:  # a wrong config or manifest: one line, before any weight loads
        print(f"critic_ceiling.py: error: {e}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    parts = build_parts(cfg, "cpu", seed=args.seed)
    at = min(EPOCHS, args.epochs)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    rows = []
    for keep in args.keep:
        torch.manual_seed(args.seed)  # each keep's rows as a run of that keep alone gives them (heads, augmentation)
        parts.gen.manual_seed(args.seed)
        data = draw_ground_truth(cfg, parts, its, n=args.batches, seed=args.seed, keep=keep)
        d = detail_control(data, held_out=args.held_out)
        rows.append({"keep": keep, "critic": "detail (no learning)", f"D_e @{at}": d["edit"], f"D_v @{at}": d["video"],
                     "paired D_e": d["edit paired"]})
        for name, critic in (("heads on the features", fresh_heads(cfg, parts)),
                             ("heads on pixel patches", pixel_parts(cfg, parts))):
            log(f"keep {keep}, {name}:")
            r = probe(cfg, critic, data, held_out=args.held_out, epochs=args.epochs, d_lr=cfg.optim.d_lr, log=log)
            early = r["by epoch"][at]["held-out"]
            rows.append({"keep": keep, "critic": name,
                         f"D_e @{at}": early["edit acc"], f"D_v @{at}": early["video acc"],
                         f"D_e @{args.epochs}": r["held-out"]["edit acc"],
                         f"D_v @{args.epochs}": r["held-out"]["video acc"],
                         "paired D_e": r["held-out"]["edit paired"], "train D_e": r["train"]["edit acc"]})
    columns = ["critic", f"D_e @{at}", f"D_v @{at}", f"D_e @{args.epochs}", f"D_v @{args.epochs}", "paired D_e",
               "train D_e"]
    table = pd.DataFrame(rows).set_index("keep")[list(dict.fromkeys(columns))]  # one pair of columns when at == epochs
    print(f"held-out accuracy, reals the ground truth, fakes the same frames at `keep` of the grain "
          f"({args.batches - args.held_out} micro-batches of {cfg.run.micro_batch} trained on, {args.held_out} held "
          f"out; gate 3 needs D_e >= 0.8 after {EPOCHS} epochs on the teachers' samples):\n")
    print(markdown(table.astype(object).where(table.notna(), "")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
