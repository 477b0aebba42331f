"""Can the discriminators tell the teachers' samples from the student's? A probe of FDD's adversarial signal.

    python bench/disc_probe.py [--student runs/shapes-fdd/ckpt-000220] [--config configs/shapes/fdd.yaml] \
        [--batches 12] [--held-out 2] [--epochs 15] [--d-lr 1e-3] [key=value ...]

Draws `--batches` micro-batches from the config's FDD data, and for each the student's k-step edit (fake; with no
--student, a fresh LoRA: plug-and-play) and the
teachers' samples exactly as training makes them (real: the edit teacher frame by frame, the video teacher from f1).
Then trains fresh discriminator heads (the config's D_e, D_v, hinge loss, R1, augmentation) for `--epochs` passes
over all but the last `--held-out` batches, and prints how far the fakes are from each teacher's samples in pixels,
then per epoch the logit gap (mean real - mean fake) and the
accuracy (real > 0, fake < 0, averaged) on the training and held-out batches. A critic near 0.5 held-out accuracy
gives the generator hinge gradients that carry no information about the teachers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.data.clips import ClipDataset, collate  # noqa: E402
from eve.data.manifest import read_manifest  # noqa: E402
from eve.models.lora import EVE_LORA_NAME, load_lora_into  # noqa: E402
from eve.train.fdd import edit_pairs  # noqa: E402
from eve.train.loop import build_parts, make_batch  # noqa: E402


@torch.no_grad()
def draw(cfg, parts, n: int, seed: int) -> list[tuple]:
    """n micro-batches of (Batch, fake, real edit, real video), pixels [B, F, 3, H, W]."""
    m, rows = parts.model, read_manifest(cfg.data.manifest)
    ds = ClipDataset(rows, cfg.model.num_frames, cfg.data.stride, cfg.data.size or cfg.model.resolution)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    B, out = cfg.run.micro_batch, []
    for i in range(n):
        raw = collate([ds[j] for j in order[i * B : (i + 1) * B]])
        b = make_batch(cfg, m, rows, raw, None, "", parts.gen, True)
        x0 = parts.generator_step(b, False)["x0"]
        out.append((b, m.decode_video(x0), m.decode_video(b.real_edit), m.decode_video(b.real_video)))
    return out


@torch.no_grad()
def score(critic, data, frames: list[int]) -> dict[str, float]:
    critic.eval()
    logits = {"er": [], "ef": [], "vr": [], "vf": []}
    for b, fake, real_e, real_v in data:
        text = b.instruction_pooled.repeat_interleave(len(frames), 0)
        logits["er"].append(critic.edit(*edit_pairs(real_e, b.frames, frames), text).mean(1))
        logits["ef"].append(critic.edit(*edit_pairs(fake, b.frames, frames), text).mean(1))
        logits["vr"].append(critic.video(real_v, b.caption_pooled).mean(1))
        logits["vf"].append(critic.video(fake, b.caption_pooled).mean(1))
    critic.train()
    c = {k: torch.cat(v) for k, v in logits.items()}
    acc = lambda r, f: float(((r > 0).float().mean() + (f < 0).float().mean()) / 2)  # noqa: E731
    return {"edit gap": float(c["er"].mean() - c["ef"].mean()), "edit acc": acc(c["er"], c["ef"]),
            "video gap": float(c["vr"].mean() - c["vf"].mean()), "video acc": acc(c["vr"], c["vf"])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes" / "fdd.yaml"))
    ap.add_argument("--student", help="checkpoint folder (or LoRA file) whose edits are the fakes")
    ap.add_argument("--batches", type=int, default=12)
    ap.add_argument("--held-out", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--d-lr", type=float, default=None, help="default: the config's optim.d_lr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)
    if not 0 < args.held_out < args.batches:
        ap.error(f"--held-out must be between 1 and --batches - 1, got {args.held_out}")
    cfg = load_config(args.config, args.overrides)
    torch.manual_seed(args.seed)
    parts = build_parts(cfg, "cpu", seed=args.seed)
    if parts.critic_step is None:
        ap.error("the config has fdd.use_adversarial=false: there are no discriminators to probe")
    if args.student:
        student = Path(args.student)
        load_lora_into(parts.model.unet, student / EVE_LORA_NAME if student.is_dir() else student)
    data = draw(cfg, parts, args.batches, args.seed)
    train, held = data[: -args.held_out], data[-args.held_out :]
    dist = lambda i: sum(float((d[1] - d[i]).abs().mean()) for d in data) / len(data)  # noqa: E731
    print(f"mean |student - edit teacher| {dist(2):.4f}, |student - video teacher| {dist(3):.4f} per pixel on [-1, 1]\n")
    F = cfg.model.num_frames
    frames = parts.generator_step.disc_frames(F)
    opt = torch.optim.Adam(parts.head_params, lr=args.d_lr or cfg.optim.d_lr, betas=tuple(cfg.optim.d_betas))
    print(f"| epoch | train edit gap | train edit acc | train video gap | train video acc | held-out edit gap | "
          f"held-out edit acc | held-out video gap | held-out video acc |\n|" + "---|" * 9)
    for epoch in range(args.epochs + 1):
        if epoch:
            for b, fake, real_e, real_v in train:
                opt.zero_grad(set_to_none=True)
                parts.critic_step(fake, real_e, real_v, b, frames)["loss"].backward()
                opt.step()
        t, h = score(parts.critic_step, train, frames), score(parts.critic_step, held, frames)
        print(f"| {epoch} | " + " | ".join(f"{d[k]:.3f}" for d in (t, h) for k in d) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
