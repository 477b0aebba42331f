"""What one edit costs, by part, at full architecture size (issue 12): the FDD student at k steps, plug-and-play at
many steps and the per-frame edit teacher, for clips of several lengths.

    python -m eve.models.full runs/full          # once: the SD-1.5-size random-weight stack (2.8 GB, fp16)
    python bench/edit_speed.py --config runs/full/eve.yaml [--resolution 64] [--frames 8 16] [--ks 1 3]

Every row runs eve's one editing path (eve.editing.pipeline: `edit_first_frame`, `edit_windows`, the codec's
decode; the per-frame teacher through `edit_first_frame` over every frame with one noise): the first frame by the
edit teacher at `--teacher-steps` with text and image guidance, then the clip over windows of the model's frame
count by the student (a rank-64 LoRA attached: its cost is a trained one's) or plug-and-play. Times are one run
after a warm-up, on this machine's device; memory is the peak allocated on a GPU, or the process's peak RSS so far
on a CPU (it only grows, so a row's figure includes the rows before it). Weights are random: time and memory do
not depend on their values. On a CPU, run at a reduced resolution: the ratios between rows hold roughly (attention
grows faster with resolution than the convolutions, so at 512² the passes weigh more), the seconds do not.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.diffusion.timesteps import ddim_timesteps  # noqa: E402
from eve.editing.pipeline import edit_first_frame, edit_windows  # noqa: E402
from eve.errors import EveError  # noqa: E402
from eve.models import EveModel  # noqa: E402
from eve.models.composed import Cond, Role  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


@torch.no_grad()
def one_edit(model: EveModel, *, frames: int, size: int, method: str, steps: int, teacher_steps: int, cfg) -> dict:
    """Seconds per part of one edit of a random clip [1, frames, 3, size, size]."""
    e, dev = cfg.edit, model.device
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(1, frames, 3, size, size, generator=gen).to(dev) * 2 - 1
    text = model.encode_text(["a red car on a road", "make the car red"])
    base = Cond(caption=text[:1], instruction=text[1:], task=torch.tensor([0]))
    spacing, T = e.timestep_spacing, model.schedule.num_train_timesteps
    out = {}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(dev)
    start = time.perf_counter()
    if method == "per-frame teacher":
        cond = Cond(caption=text[:1].expand(frames, -1, -1), instruction=text[1:].expand(frames, -1, -1),
                    task=torch.zeros(frames, dtype=torch.long))
        latents = edit_first_frame(model, src[0][:, None], cond, steps=ddim_timesteps(teacher_steps, T, spacing),
                                   text_scale=e.teacher_guidance, image_scale=e.teacher_image_guidance,
                                   generator=gen, shared_noise=True)[None]
        sync(dev)
        out["first frame"], out["windows"] = time.perf_counter() - start, 0.0
    else:
        first = edit_first_frame(model, src[:, :1], base, steps=ddim_timesteps(teacher_steps, T, spacing),
                                 text_scale=e.teacher_guidance, image_scale=e.teacher_image_guidance, generator=gen)
        sync(dev)
        out["first frame"] = time.perf_counter() - start
        role = Role.STUDENT if method == "student" else Role.PLUG_AND_PLAY
        guidance = (1.0, 1.0) if method == "student" else (e.teacher_guidance, e.teacher_image_guidance)
        t0 = time.perf_counter()
        latents = edit_windows(model, src, base, first, steps=ddim_timesteps(steps, T, spacing),
                               overlap=e.window_overlap, role=role, text_scale=guidance[0], image_scale=guidance[1],
                               generator=gen)
        sync(dev)
        out["windows"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.decode_video(latents)
    sync(dev)
    out["decode"] = time.perf_counter() - t0
    out["total"] = time.perf_counter() - start
    out["peak GB"] = peak_gb(dev)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="runs/full/eve.yaml", help="eve config of the stack (python -m eve.models.full)")
    ap.add_argument("--resolution", type=int, help="working size (default: the config's; on a CPU use 64)")
    ap.add_argument("--frames", type=int, nargs="+", default=[8, 16], help="clip lengths")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 3], help="student steps")
    ap.add_argument("--pnp-steps", type=int, nargs="+", default=[25, 50], help="plug-and-play steps")
    ap.add_argument("--teacher-steps", type=int, default=50, help="the edit teacher's steps (first frame, per frame)")
    ap.add_argument("--dtype", help="model.dtype (default: bfloat16 on a GPU, float32 on a CPU)")
    ap.add_argument("--methods", nargs="+", default=["student", "plug-and-play", "per-frame teacher"],
                    choices=["student", "plug-and-play", "per-frame teacher"])
    ap.add_argument("--out", default="bench/out/edit_speed.csv", help="CSV of every row")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides, e.g. model.batch_guidance=false (guidance branches one call each)")
    args = ap.parse_args(argv)
    if not Path(args.config).is_file():
        print(f"edit_speed.py: error: {args.config} not found: write the stack first (python -m eve.models.full "
              f"{Path(args.config).parent})", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available()
    overrides = [f"model.dtype={args.dtype or ('bfloat16' if cuda else 'float32')}", *args.overrides]
    if args.resolution:
        overrides.append(f"model.resolution={args.resolution}")
    try:
        cfg = load_config(args.config, overrides)
        model = EveModel.from_config(cfg.model)
    except EveError as e:
        print(f"edit_speed.py: error: {e}", file=sys.stderr)
        return 2
    if cuda:
        model.to("cuda")
    model.add_lora(cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.lora_targets)  # the student's θ_align
    size = cfg.model.resolution
    methods = ([("student", k) for k in args.ks] + [("plug-and-play", s) for s in args.pnp_steps]
               + [("per-frame teacher", args.teacher_steps)])
    methods = [(m, s) for m, s in methods if m in args.methods]
    one_edit(model, frames=cfg.model.num_frames, size=size, method="student", steps=1, teacher_steps=1, cfg=cfg)
    rows = []
    for frames in args.frames:
        for method, steps in methods:
            r = one_edit(model, frames=frames, size=size, method=method, steps=steps,
                         teacher_steps=args.teacher_steps, cfg=cfg)
            name = f"{method} ({steps} steps)" if method != "per-frame teacher" else f"{method} ({steps} steps)"
            rows.append({"method": name, "frames": frames, **r, "s / frame": r["total"] / frames,
                         "first-frame share": r["first frame"] / r["total"]})
            print(f"{name}, {frames} frames: {r['total']:.1f} s", flush=True)
    df = pd.DataFrame(rows)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    device = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\n{device}, {size}x{size}, {cfg.model.dtype}, windows of {cfg.model.num_frames} frames overlapping by "
          f"{cfg.edit.window_overlap}, first frame by the edit teacher at {args.teacher_steps} steps, guidance "
          f"branches {'batched' if cfg.model.batch_guidance else 'one call each'}\n")
    print(markdown(df.set_index("method").round(3)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
