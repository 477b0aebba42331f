"""The free-latent probe: does an objective's generator gradient add detail, before any training run?

    python bench/world/sds_probe.py [--config configs/shapes/fdd.yaml] [--clips 7] [--steps 120] [--eval-every 30] \
        [--lr 1e-2] [--start-guidance 1 1] [--objective "NAME=key=value,key=value" ...] [--out bench/out/sds_probe]

No student: the 3-step plug-and-play latents of validation clips (the training side of the split, one task a clip;
never the test set) are the parameters, frames 1..F-1 trainable and frame 0 the edit teacher's f1, as in training.
Each objective takes FDD's own generator terms (`FddGenerator.terms`: the score terms, SDS or distribution matching,
and, with an adversarial objective, the hinge terms of critics trained beside it on the teachers' samples) as the
gradient of those latents, Adam at --lr, fresh (t, eps) each step; the fake scores (fdd.score=dmd) and the critics
take their own turns after each step as in training (`eve.train.loop`'s). Every --eval-every steps the latents are
decoded and scored with the world's metrics (success, contrast, warp, combined) and their fine detail
(measure.fine_detail over frames 1..F-1; log, higher is more). Objectives are FDD config overrides on --config;
the defaults are the paper's SDS at the config's guidance, SDS at 7.5 and 15, distribution matching, the critics'
hinge gradient alone, and the noise control (each SDS gradient replaced by noise of its RMS).

Writes probe.md (the table), results.csv and grid.png (per objective, the final latents of the first clips).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.diffusion.timesteps import ddim_timesteps  # noqa: E402
from eve.editing.pipeline import edit_windows  # noqa: E402
from eve.errors import EveError  # noqa: E402
from eve.models.composed import Cond, Role  # noqa: E402
from eve.tasks import task_id  # noqa: E402
from eve.train.loop import build_parts, make_batch  # noqa: E402
from eve.train.samples import grid_image  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402
from eve.worlds.shapes import world as W  # noqa: E402
from eve.worlds.shapes.data import items  # noqa: E402
from eve.worlds.shapes.evaluate import VALIDATION_SEED  # noqa: E402
from eve.worlds.shapes.validation import summary  # noqa: E402

OBJECTIVES = [
    "SDS (the config's guidance)=fdd.score=sds",
    "SDS, guidance 7.5=fdd.edit_guidance=7.5,fdd.video_guidance=7.5",
    "SDS, guidance 15=fdd.edit_guidance=15,fdd.video_guidance=15",
    "distribution matching (DMD)=fdd.score=dmd",
    "critics' hinge alone=fdd.use_sds=false,fdd.gen_loss=add_linear",
    "noise control=fdd.sds_noise_control=true",
]
METRICS = ("success", "contrast", "warp", "combined")  # the world's; psnr is left out (the start is no target)


def parse_objective(spec: str) -> tuple[str, list[str]]:
    name, sep, overrides = spec.partition("=")
    if not sep or not name.strip():
        raise EveError(f"--objective {spec!r} must look like NAME=key=value[,key=value]")
    return name.strip(), [o for o in overrides.split(",") if o]


def wants_critics(cfg, overrides: list[str]) -> bool:
    """Critics train beside the latents when the objective has no score term, or asks for them by name
    (fdd.use_adversarial=true): the training configs turn them on for the adversarial phase only."""
    return not cfg.fdd.use_sds or "fdd.use_adversarial=true" in overrides


def probe_batch(cfg, model, val, gen):
    """The validation items as a Batch, with f1 and the teachers' samples (the critics' reals)."""
    raw = {"frames": torch.stack([W.render_video(it.source) for it in val]),
           "caption": [it.caption for it in val], "instruction": [it.instruction for it in val],
           "task": torch.tensor([task_id(it.task) for it in val])}
    return make_batch(cfg, model, None, raw, gen=gen, need_real=True)


def start_latents(model, b, k: int, scales: tuple[float, float], spacing: str, seed: int) -> torch.Tensor:
    """Plug-and-play's k-step edit of the clips from f1: where a student starts."""
    steps = ddim_timesteps(k, model.schedule.num_train_timesteps, spacing)
    with torch.no_grad():
        return edit_windows(model, b.frames, Cond(b.caption, b.instruction, task=b.task), b.f1, steps=steps,
                            overlap=1, role=Role.PLUG_AND_PLAY, text_scale=scales[0], image_scale=scales[1],
                            generator=torch.Generator().manual_seed(seed))


def score(model, latents, val) -> dict:
    with torch.no_grad():
        video = model.decode_video(latents).clamp(-1, 1).cpu()
    return {k: v for k, v in summary(video, val).items() if k in METRICS + ("detail",)}, video


def run_objective(cfg, parts, b, start, val, *, steps: int, eval_every: int, lr: float, seed: int, log) -> tuple:
    """Rows (one per evaluation) and the final decoded clips of one objective."""
    gen_step, model = parts.generator_step, parts.model
    parts.gen.manual_seed(seed)
    free = torch.nn.Parameter(start[:, 1:].clone())
    opt = torch.optim.Adam([free], lr=lr)
    opt_f = torch.optim.Adam(parts.fake, lr=cfg.fdd.fake_lr) if parts.fake else None
    opt_d = torch.optim.Adam(parts.head_params, lr=cfg.optim.d_lr, betas=tuple(cfg.optim.d_betas)) \
        if parts.discs else None
    known = gen_step.known(b, torch.zeros_like(start))
    first = start[:, :1]
    rows, t0 = [], time.perf_counter()
    (metrics, video) = score(model, start, val)
    rows.append({"step": 0} | metrics)
    warmup = cfg.fdd.disc_warmup_steps if parts.discs else 0
    for step in range(1, steps + warmup + 1):
        x0 = torch.cat([first, free], 1)
        adversarial = parts.discs is not None and step > warmup
        if step > warmup:
            for p in parts.head_params:
                p.requires_grad_(False)
            res = gen_step.terms(x0, b, known, adversarial)
            opt.zero_grad(set_to_none=True)
            res["loss"].backward()
            opt.step()
        x0 = x0.detach()
        if opt_f is not None:
            opt_f.zero_grad(set_to_none=True)
            parts.fake_step(x0, b, known)["loss"].backward()
            opt_f.step()
        if opt_d is not None:
            for p in parts.head_params:
                p.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            with torch.no_grad():
                fake = model.decode_video(x0)
                real_e, real_v = model.decode_video(b.real_edit), model.decode_video(b.real_video)
            parts.critic_step(fake, real_e, real_v, b, gen_step.disc_frames(x0.shape[1]))["loss"].backward()
            opt_d.step()
        done = step - warmup
        if done > 0 and (done % eval_every == 0 or done == steps):
            metrics, video = score(model, torch.cat([first, free.detach()], 1), val)
            rows.append({"step": done} | metrics)
            log(f"  step {done}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
                + f" ({time.perf_counter() - t0:.0f} s)")
    return rows, video


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes" / "fdd.yaml"))
    ap.add_argument("--clips", type=int, default=7, help="validation clips, one task each (7: every task once)")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--eval-every", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--start-guidance", type=float, nargs=2, default=(1.0, 1.0), metavar=("TEXT", "IMAGE"),
                    help="plug-and-play's guidance for the start latents (1 1: where the student starts)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--objective", action="append", metavar="NAME=key=value[,key=value]",
                    help=f"an objective as FDD config overrides (repeatable; default: {len(OBJECTIVES)} of them)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "sds_probe"))
    args = ap.parse_args(argv)
    if args.clips < 1 or args.steps < 1 or args.eval_every < 1 or not args.lr > 0:
        ap.error(f"need --clips, --steps, --eval-every >= 1 and --lr > 0, got {args.clips}, {args.steps}, "
                 f"{args.eval_every}, {args.lr}")
    try:
        objectives = [parse_objective(s) for s in (args.objective or OBJECTIVES)]
        configs = [(name, load_config(args.config, over)) for name, over in objectives]
    except EveError as e:
        ap.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    val = items(VALIDATION_SEED, args.clips, all_tasks=False)
    torch.manual_seed(args.seed)
    base = configs[0][1]
    parts = build_parts(replace(base, fdd=replace(base.fdd, use_adversarial=False)), "cpu", seed=args.seed)
    b = probe_batch(base, parts.model, val, parts.gen)
    start = start_latents(parts.model, b, base.fdd.k, args.start_guidance, base.edit.timestep_spacing, args.seed)
    rows, videos = [], {}
    for name, cfg in configs:
        log(f"{name}:")
        critics = wants_critics(cfg, dict(objectives)[name])
        parts = build_parts(replace(cfg, fdd=replace(cfg.fdd, use_adversarial=critics)), "cpu", seed=args.seed)
        got, videos[name] = run_objective(cfg, parts, b, start, val, steps=args.steps, eval_every=args.eval_every,
                                          lr=args.lr, seed=args.seed, log=log)
        rows += [{"objective": name} | r for r in got]
        pd.DataFrame(rows).to_csv(out / "results.csv", index=False)  # each objective kept as it finishes
    df = pd.DataFrame(rows)
    table = df.set_index("objective")
    table[list(METRICS) + ["detail"]] = table[list(METRICS) + ["detail"]].map(lambda v: f"{v:.3f}")
    text = (f"### Free-latent probe: {args.clips} validation clips, {args.steps} steps of Adam at lr {args.lr}, "
            f"start: plug-and-play at {base.fdd.k} steps, guidance {args.start_guidance[0]:g} / "
            f"{args.start_guidance[1]:g}, seed {args.seed}\n\n" + markdown(table) + "\n")
    (out / "probe.md").write_text(text)
    print(text)
    shown = min(3, len(val))
    clips = [W.render_video(val[i].source) for i in range(shown)] + [W.render_video(val[i].target)
                                                                    for i in range(shown)]
    labels = [f"input {i}" for i in range(shown)] + [f"ground truth {i}" for i in range(shown)]
    for name, video in videos.items():
        clips += [video[i] for i in range(shown)]
        labels += [f"{name} {i}" for i in range(shown)]
    grid_image(clips, scale=4, labels=labels).save(out / "grid.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
