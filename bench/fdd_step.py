"""What one FDD step costs, part by part, and how the student's activation memory grows with k.

    python bench/fdd_step.py                         # tiny random-weight set (written to a temp folder), CPU
    python bench/fdd_step.py --config CFG.yaml [key=value ...] [--ks 1 2 3 4] [--repeats 5]

Prints two markdown tables. Part times are minima over --repeats runs after one warm-up. "whole step" is the real
generator + critic turn (FddGenerator + FddDiscriminator, forward and backward, both optimizer steps); the ratio
whole / sum(parts) shows what the parts miss (glue, LoRA toggles, allocator). Memory is the bytes autograd keeps
for backward during the student's k-step generation (saved-tensor hooks; device independent), and on CUDA also the
peak allocated memory of the student's forward + backward.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.data.clips import ClipDataset, collate  # noqa: E402
from eve.data.manifest import read_manifest  # noqa: E402
from eve.models.composed import Cond, Role  # noqa: E402
from eve.models.known import Known, first_frame  # noqa: E402
from eve.train.fdd import augment_pairs, edit_pairs, student_generate, student_timesteps  # noqa: E402
from eve.train.loop import build_parts, make_batch  # noqa: E402
from eve.train.real_samples import RealSampleCache, cache_dir, teacher_fingerprint  # noqa: E402


def timed(fn, repeats: int, sync) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def saved_bytes(fn) -> int:
    """Bytes of the distinct storages autograd saves for backward while fn runs."""
    seen: dict[int, int] = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(seen.values()), out


def tiny_overrides(tmp: Path) -> list[str]:
    """Writes the tiny random-weight set and a toy dataset into tmp; the overrides that point configs/tiny.yaml at
    them."""
    from eve.data.toy import write_toy_dataset
    from eve.models.tiny import write_tiny

    write_tiny(tmp)
    manifest = write_toy_dataset(tmp / "data", num_videos=2, num_frames=12, size=16)
    return [f"model.pretrained={tmp / 'sd'}", f"model.controlnet={tmp / 'controlnet'}",
            f"model.motion_adapter={tmp / 'motion_adapter'}", f"model.dino={tmp / 'dino'}",
            f"data.manifest={manifest}", f"run.out_dir={tmp / 'run'}", "run.micro_batch=1"]


def tiny_config(tmp: Path, overrides: list[str]):
    return load_config(ROOT / "configs" / "tiny.yaml", tiny_overrides(tmp) + overrides)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3, 4])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    tmp = tempfile.TemporaryDirectory()
    cfg = load_config(args.config, args.overrides) if args.config else tiny_config(Path(tmp.name), args.overrides)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    parts = build_parts(cfg, dev)
    m, (d_e, d_v), gen = parts.model, parts.discs, parts.gen
    opt_g = torch.optim.AdamW(parts.lora, lr=1e-6)
    opt_d = torch.optim.Adam(parts.head_params, lr=1e-6)
    rows = read_manifest(cfg.data.manifest)
    size = cfg.data.size or cfg.model.resolution
    ds = ClipDataset(rows, cfg.model.num_frames, cfg.data.stride, size)
    B = cfg.run.micro_batch
    cache = RealSampleCache(cache_dir(cfg))
    fp = teacher_fingerprint(cfg)
    raw = collate([ds[i % len(ds)] for i in range(B)])
    b = make_batch(cfg, m, rows, raw, gen=gen, need_real=True, cache=cache, fingerprint=fp)  # fills the cache once
    F = b.frames.shape[1]
    shape = (B, F, m.latent_channels, *b.f1.shape[-2:])
    noise = torch.randn(shape).to(dev)
    mask = torch.zeros(F, dtype=torch.bool)
    mask[0] = True
    cond = Cond(b.caption, b.instruction, b.frames, b.task, Known(first_frame(b.f1, F, noise).latents, mask, noise))
    T = m.schedule.num_train_timesteps
    f = cfg.fdd
    t = torch.full((B,), T // 2, device=dev)
    xt = m.schedule.add_noise(torch.zeros(shape, device=dev), noise, t)
    ts = student_timesteps(f.k, T, f.timesteps, f.pin_first, gen)

    def student():
        x0 = student_generate(m, cond, noise, ts, f.grad_checkpointing)
        (x0 * torch.randn_like(x0)).sum().backward()

    def edit_teacher():
        with torch.no_grad():
            m.guided_x0(xt, t, Cond(b.caption, b.instruction, b.frames, b.task), Role.EDIT_TEACHER,
                        text_scale=f.edit_guidance, image_scale=f.edit_image_guidance)

    def video_teacher():
        with torch.no_grad():
            m.guided_x0(xt, t, Cond(b.caption, known=cond.known), Role.VIDEO_TEACHER, text_scale=f.video_guidance)

    fake = m.decode_video(torch.randn(shape, device=dev)).detach()
    idx = list(range(F))

    def disc_edit():
        x = fake.clone().requires_grad_()
        out, src = augment_pairs(*edit_pairs(x, b.frames, idx), gen)
        d_e(out, src, b.instruction_pooled.repeat_interleave(F, 0)).mean().backward()

    def disc_video():
        x = fake.clone().requires_grad_()
        d_v(x, b.caption_pooled).mean().backward()

    def critic():
        with torch.no_grad():
            real_e, real_v = m.decode_video(b.real_edit), m.decode_video(b.real_video)
        parts.critic_step(fake, real_e, real_v, b, idx)["loss"].backward()

    def whole():
        opt_g.zero_grad()
        res = parts.generator_step(b, True)
        res["loss"].backward()
        opt_g.step()
        opt_d.zero_grad()
        with torch.no_grad():
            real_e, real_v = m.decode_video(b.real_edit), m.decode_video(b.real_video)
        parts.critic_step(res["fake"], real_e, real_v, b, idx)["loss"].backward()
        opt_d.step()

    timings = {
        "data (decode + crop)": timed(lambda: collate([ds[i % len(ds)] for i in range(B)]), args.repeats, sync),
        "batch prep (text, cached teacher samples)": timed(
            lambda: make_batch(cfg, m, rows, raw, gen=gen, need_real=True, cache=cache, fingerprint=fp), args.repeats,
            sync),
        f"student, k={f.k}, fwd+bwd": timed(student, args.repeats, sync),
        "edit teacher SDS (dual CFG, no grad)": timed(edit_teacher, args.repeats, sync),
        "video teacher SDS (CFG, no grad)": timed(video_teacher, args.repeats, sync),
        "D_e fwd+bwd (all frames)": timed(disc_edit, args.repeats, sync),
        "D_v fwd+bwd": timed(disc_video, args.repeats, sync),
        "critic turn fwd+bwd (+R1)": timed(critic, args.repeats, sync),
    }
    total_parts = sum(timings.values())
    whole_s = timed(whole, args.repeats, sync)
    print(f"\n### One FDD step ({dev.type}, micro-batch {B}, {F} frames, {size}x{size} px, k={f.k})\n")
    print("| part | seconds | share of parts |\n|---|---:|---:|")
    for name, s in timings.items():
        print(f"| {name} | {s:.4f} | {100 * s / total_parts:.1f}% |")
    print(f"| **sum of parts** | {total_parts:.4f} | 100% |")
    print(f"| **whole step** (generator + critic turns, optimizer steps) | {whole_s:.4f} | ratio {whole_s / total_parts:.2f} |")

    print("\n### Student generation memory as k grows\n")
    print("| k | checkpointing | saved for backward (MiB) | fwd+bwd seconds |" + (" CUDA peak (MiB) |" if dev.type == "cuda" else ""))
    print("|---:|---|---:|---:|" + ("---:|" if dev.type == "cuda" else ""))
    for k in args.ks:
        for ckpt in (False, True):
            ts_k = student_timesteps(k, T, "fixed", True, gen)
            if dev.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            nbytes, x0 = saved_bytes(lambda: student_generate(m, cond, noise, ts_k, ckpt))
            x0.sum().backward()
            peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None

            def run():
                student_generate(m, cond, noise, ts_k, ckpt).sum().backward()

            s = timed(run, max(1, args.repeats // 2), sync)
            row = f"| {k} | {'yes' if ckpt else 'no'} | {nbytes / 2**20:.2f} | {s:.4f} |"
            print(row + (f" {peak:.0f} |" if peak is not None else ""))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
