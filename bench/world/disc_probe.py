"""Can the discriminators tell the teachers' samples from the student's? A probe of FDD's adversarial signal.

    python bench/world/disc_probe.py [--student data/shapes/student] [--config configs/shapes/fdd.yaml] \
        [--batches 30] [--held-out 6] [--epochs 15] [--d-lr 1e-3] [--teacher-steps 3] [--pixels] [--controls] \
        [key=value ...]

With --teacher-steps K the fakes are the teachers' own samples at K steps and the reals the same teachers' at the
config's fdd.real_steps (the shapes world's gate 3: a critic must be able to see few-step failure).

Draws `--batches` micro-batches from the config's FDD data, and for each the student's k-step edit (fake; with no
--student, a fresh LoRA: plug-and-play) and the
teachers' samples exactly as training makes them (real: the edit teacher frame by frame, the video teacher from f1).
Then trains fresh discriminator heads (the config's D_e, D_v, hinge loss, R1, augmentation) for `--epochs` passes
over all but the last `--held-out` batches, and prints how far the fakes are from each teacher's samples in pixels,
then per epoch the logit gap (mean real - mean fake) and the
accuracy (real > 0, fake < 0, averaged) on the training and held-out batches. A critic near 0.5 held-out accuracy
gives the generator hinge gradients that carry no information about the teachers.

With --pixels the same samples are probed a second time by the control critic (`PixelPatches`): raw pixel patches in
place of the frozen features, under heads of the same design (one, as pixels have one level). If heads on pixels do
no better, the features are not what hides a difference.

With --controls (shapes world), two more, which say on which side of the critic a failure lies:
* detail: no learned critic, one hand-made number per frame (`measure.fine_detail`, the grain's strength) and one
  threshold per task fitted on the training batches (D_e's heads see the instruction, so they could do as much);
  if it separates the held-out samples and the heads do not, the difference is in the samples and the critic
  misses it;
* blur: fresh heads on the critic's features, with the reals as they are and the fakes the same reals blurred
  (3x3 box): a difference anyone sees. Heads that do not separate it in the same epochs cannot be expected to
  separate a subtler one.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from eve.config import load_config  # noqa: E402
from eve.data.clips import ClipDataset, collate  # noqa: E402
from eve.data.manifest import read_manifest  # noqa: E402
from eve.models.discriminator import EditDiscriminator, VideoDiscriminator, to_grid  # noqa: E402
from eve.models.lora import EVE_LORA_NAME, load_lora_into  # noqa: E402
from eve.tasks import TASKS  # noqa: E402
from eve.train.fdd import FddDiscriminator, edit_pairs  # noqa: E402
from eve.train.loop import Parts, build_parts, make_batch  # noqa: E402


EPOCHS = 15  # passes of the fresh heads over the training batches (this script's and gates.py's default)


class PixelPatches(nn.Module):
    """The control critic's "features": the image's own p x p pixel patches as tokens (their mean as the CLS), on
    the same pixel grid the feature net sees (resized to its input size, p its patch size). One hook, so one head
    per discriminator: pixels have one level, where the features have one per hooked block. Heads on these can see
    anything the pixels show; if they do no better than heads on the frozen features, the features are not what
    hides a difference."""

    def __init__(self, patch: int, size: tuple[int, int]):
        super().__init__()
        self.patch, self.size, self.hooks, self.dim = patch, tuple(size), [0], 3 * patch * patch

    def forward(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        x = to_grid(images.float(), self.size)
        N, C, H, W = x.shape
        p = self.patch
        tokens = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(N, (H // p) * (W // p), C * p * p)
        return [(tokens, tokens.mean(1))]


def fresh_heads(cfg, parts: Parts, features: nn.Module | None = None) -> Parts:
    """`parts` with fresh discriminator heads (the config's) on `features` (default: the same frozen features)."""
    features = parts.discs[0].features if features is None else features
    d, text_dim = cfg.disc, parts.model.text.encoder.config.hidden_size
    discs = (EditDiscriminator(features, text_dim, d.channels, d.cmap_dim, d.heads),
             VideoDiscriminator(features, text_dim, d.channels, d.cmap_dim, d.heads, cfg.model.num_frames))
    heads = [p for m in discs for p in m.parameters() if p.requires_grad]
    return replace(parts, discs=discs, head_params=heads,
                   critic_step=FddDiscriminator(*discs, cfg.fdd, parts.gen, parts.critic_step.augment))


def pixel_parts(cfg, parts: Parts) -> Parts:
    """`parts` with fresh discriminator heads (the config's) on `PixelPatches` instead of the frozen features."""
    vit_features = parts.discs[0].features
    return fresh_heads(cfg, parts, PixelPatches(vit_features.vit.patch_embed.patch_size[0], vit_features.size))


def _dataset(cfg):
    rows = read_manifest(cfg.data.manifest)
    return rows, ClipDataset(rows, cfg.model.num_frames, cfg.data.stride, cfg.data.size or cfg.model.resolution)


def micro_batches(cfg, parts, n: int, seed: int, *, need_real: bool = True, need_f1: bool = True):
    """The probe's n micro-batches of the config's FDD data, in one seeded order: (manifest rows, collated clips,
    Batch), made by `make_batch` with need_real and need_f1 (False and False: no teacher sampled)."""
    m, (rows, ds) = parts.model, _dataset(cfg)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    B = cfg.run.micro_batch
    for i in range(n):
        raw = collate([ds[j] for j in order[i * B : (i + 1) * B]])
        yield rows, raw, make_batch(cfg, m, rows, raw, gen=parts.gen, need_real=need_real, need_f1=need_f1)


@torch.no_grad()
def draw(cfg, parts, n: int, seed: int) -> list[tuple]:
    """n micro-batches of (Batch, fake for D_e, fake for D_v, real edit, real video), pixels [B, F, 3, H, W]."""
    m, out = parts.model, []
    for _, _, b in micro_batches(cfg, parts, n, seed):
        fake = m.decode_video(parts.generator_step(b, False)["x0"])
        out.append((b, fake, fake, m.decode_video(b.real_edit), m.decode_video(b.real_video)))
    return out


@torch.no_grad()
def draw_teachers(cfg, parts, n: int, seed: int, k: int) -> list[tuple]:
    """As `draw`, with the fakes the teachers' own samples at k steps (the video teacher's from its k-step f1)."""
    m, few, out = parts.model, replace(cfg, fdd=replace(cfg.fdd, real_steps=k)), []
    for rows, raw, b in micro_batches(cfg, parts, n, seed):
        f = make_batch(few, m, rows, raw, gen=parts.gen, need_real=True)
        out.append((b, m.decode_video(f.real_edit), m.decode_video(f.real_video), m.decode_video(b.real_edit),
                    m.decode_video(b.real_video)))
    return out


def accuracy(real: Tensor, fake: Tensor) -> float:
    """Unpaired accuracy: the share of real logits above 0 and of fake logits below, averaged (a critic's job)."""
    return float(((real > 0).float().mean() + (fake < 0).float().mean()) / 2)


@torch.no_grad()
def score(critic, data, frames: list[int]) -> dict:
    """Logit gap and accuracy of D_e (per frame) and D_v (per clip); for D_e also the accuracy by task ("edit by
    task": {task: accuracy}, tasks present only) and the paired control ("edit paired": the share of frames whose
    real sample gets a strictly higher logit than the fake of the same clip and frame; ties count against). Paired
    well above unpaired says the critic sees the difference within a pair, and the variety between scenes is what
    hides it from a threshold."""
    critic.eval()
    logits = {"er": [], "ef": [], "vr": [], "vf": [], "task": []}
    for b, fake_e, fake_v, real_e, real_v in data:
        text = b.instruction_pooled.repeat_interleave(len(frames), 0)
        logits["er"].append(critic.edit(*edit_pairs(real_e, b.frames, frames), text).mean(1))
        logits["ef"].append(critic.edit(*edit_pairs(fake_e, b.frames, frames), text).mean(1))
        logits["vr"].append(critic.video(real_v, b.caption_pooled).mean(1))
        logits["vf"].append(critic.video(fake_v, b.caption_pooled).mean(1))
        logits["task"].append(b.task.repeat_interleave(len(frames)))  # edit_pairs: frames within a clip
    critic.train()
    c = {k: torch.cat(v).cpu() for k, v in logits.items()}
    out = {"edit gap": float(c["er"].mean() - c["ef"].mean()), "edit acc": accuracy(c["er"], c["ef"]),
           "video gap": float(c["vr"].mean() - c["vf"].mean()), "video acc": accuracy(c["vr"], c["vf"]),
           "edit paired": float((c["er"] > c["ef"]).float().mean())}
    out["edit by task"] = {}
    for k, name in enumerate(TASKS):
        m = c["task"] == k
        if m.any():
            out["edit by task"][name] = accuracy(c["er"][m], c["ef"][m])
    return out


def probe(cfg, parts, data, *, held_out: int, epochs: int, d_lr: float, log=print) -> dict[str, dict]:
    """Train the fresh heads on all but the last `held_out` batches; log a table row per epoch; return the last
    epoch's scores ({"train": ..., "held-out": ...}) and every epoch's ("by epoch": [{"train", "held-out"}, ...],
    epoch 0 the untrained heads)."""
    train, held = data[:-held_out], data[-held_out:]
    frames = parts.generator_step.disc_frames(cfg.model.num_frames)
    opt = torch.optim.Adam(parts.head_params, lr=d_lr, betas=tuple(cfg.optim.d_betas))
    columns = ("edit gap", "edit acc", "video gap", "video acc")
    log("| epoch | train edit gap | train edit acc | train video gap | train video acc | held-out edit gap | "
        "held-out edit acc | held-out video gap | held-out video acc | held-out edit paired |\n|" + "---|" * 10)
    history = []
    for epoch in range(epochs + 1):
        if epoch:
            for b, fake_e, fake_v, real_e, real_v in train:
                opt.zero_grad(set_to_none=True)
                parts.critic_step(fake_e, real_e, real_v, b, frames, fake_video=fake_v)["loss"].backward()
                opt.step()
        t, h = score(parts.critic_step, train, frames), score(parts.critic_step, held, frames)
        history.append({"train": t, "held-out": h})
        row = [t[k] for k in columns] + [h[k] for k in columns] + [h["edit paired"]]
        log(f"| {epoch} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    log("held-out edit acc by task: " + ", ".join(f"{k} {v:.3f}" for k, v in h["edit by task"].items()))
    return {"train": t, "held-out": h, "by epoch": history}


def fit_threshold(real: Tensor, fake: Tensor) -> tuple[float, float]:
    """(sign, threshold) of the rule "real where sign * (value - threshold) > 0, fake where < 0" with the best
    `accuracy` on these values: the candidates are the midpoints between sorted values (and one beyond each end),
    both signs; of equally good thresholds, the middle one."""
    v = torch.cat([real, fake]).sort().values
    cands = torch.cat([v[:1] - 1, (v[1:] + v[:-1]) / 2, v[-1:] + 1])
    best = (-1.0, 1.0, 0.0)
    for sign in (1.0, -1.0):
        acc = ((sign * (real[None] - cands[:, None]) > 0).float().mean(1)
               + (sign * (fake[None] - cands[:, None]) < 0).float().mean(1)) / 2
        top = (acc == acc.max()).nonzero().flatten()
        i = int(top[len(top) // 2])
        if float(acc[i]) > best[0]:
            best = (float(acc[i]), sign, float(cands[i]))
    return best[1], best[2]


def detail_control(data, *, held_out: int) -> dict:
    """The hand-made control critic: `measure.fine_detail` per frame (D_e: every frame but 0, of which D_e sees a
    few; D_v: the clip's mean over them), one (sign, threshold) per task fitted on the training batches
    (`fit_threshold`; a task absent there gets the fit over every task), scored on the held-out ones as `score`
    scores heads: {"edit", "video" (held-out accuracy), "edit paired", "real", "fake" (mean fine detail of the
    held-out edit frames)}. It reads the shapes world's grain: on other data its figures mean nothing."""
    from eve.worlds.shapes.measure import fine_detail

    def values(batches, fake_i, real_i, per_clip):
        out = {"real": [], "fake": [], "task": []}
        for d in batches:
            real, fake = fine_detail(d[real_i][:, 1:]), fine_detail(d[fake_i][:, 1:])  # [B, F-1]
            if per_clip:
                real, fake = real.mean(1, keepdim=True), fake.mean(1, keepdim=True)
            out["real"].append(real.flatten())
            out["fake"].append(fake.flatten())
            out["task"].append(d[0].task.repeat_interleave(real.shape[1]))
        return {k: torch.cat(v) for k, v in out.items()}

    def held_accuracy(train, held):
        every = fit_threshold(train["real"], train["fake"])
        real_logit, fake_logit = torch.empty_like(held["real"]), torch.empty_like(held["fake"])
        for k in held["task"].unique():
            m, mt = held["task"] == k, train["task"] == k
            sign, thr = fit_threshold(train["real"][mt], train["fake"][mt]) if mt.any() else every
            real_logit[m], fake_logit[m] = sign * (held["real"][m] - thr), sign * (held["fake"][m] - thr)
        return accuracy(real_logit, fake_logit)

    train, held = data[:-held_out], data[-held_out:]
    e_train, e_held = values(train, 1, 3, False), values(held, 1, 3, False)
    v_train, v_held = values(train, 2, 4, True), values(held, 2, 4, True)
    return {"edit": held_accuracy(e_train, e_held), "video": held_accuracy(v_train, v_held),
            "edit paired": float((e_held["real"] > e_held["fake"]).float().mean()),
            "real": float(e_held["real"].mean()), "fake": float(e_held["fake"].mean())}


def blurred(data) -> list[tuple]:
    """The probe's samples with each fake replaced by its real blurred (3x3 box), frame 0 included (in the gate's
    few-step fakes frame 0 differs too): the positive control."""
    def blur(x):
        y = x.flatten(0, 1)
        return F.avg_pool2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), 3, 1).view(x.shape)

    return [(b, blur(real_e), blur(real_v), real_e, real_v) for b, _, _, real_e, real_v in data]


def run_controls(cfg, parts, data, *, held_out: int, epochs: int, d_lr: float, log=print) -> dict[str, dict]:
    """Both controls of --controls: {"detail": `detail_control`, "blur": the held-out and training accuracies of
    fresh heads on the critic's features trained on `blurred` samples}."""
    detail = detail_control(data, held_out=held_out)
    log(f"detail control (fine detail, a threshold per task from the training batches): held-out D_e "
        f"{detail['edit']:.3f}, D_v {detail['video']:.3f}, paired {detail['edit paired']:.3f}; mean fine detail of "
        f"the held-out edit frames: real {detail['real']:.2f}, fake {detail['fake']:.2f} (log)")
    log("blur control (fresh heads on the features; fakes: the reals, blurred 3x3):")
    r = probe(cfg, fresh_heads(cfg, parts), blurred(data), held_out=held_out, epochs=epochs, d_lr=d_lr, log=log)
    blur = {"edit": r["held-out"]["edit acc"], "video": r["held-out"]["video acc"],
            "train edit": r["train"]["edit acc"], "train video": r["train"]["video acc"]}
    return {"detail": detail, "blur": blur}


def default_held_out(batches: int) -> int:
    """Held-out micro-batches when none are asked for: a fifth, at least one."""
    return max(1, batches // 5)


def teacher_probe(config: str | Path, *, k: int, batches: int = 30, held_out: int | None = None, epochs: int = EPOCHS,
                  seed: int = 0, overrides: list[str] | None = None) -> dict[str, dict]:
    """Gate 3 of the shapes world: accuracy of fresh heads separating the teachers' k-step samples from their
    fdd.real_steps ones, on the critic's features and, as the control, on raw pixel patches (the same samples):
    {"features" | "pixels": {"edit", "video" (held-out D_e, D_v), "train edit", "train video", "edit paired" and
    "edit by task" (held-out, see `score`)}, "detail" | "blur": `run_controls`}. held_out: the last micro-batches
    kept out of training (default: `default_held_out`)."""
    cfg = load_config(config, overrides)
    torch.manual_seed(seed)
    parts = build_parts(cfg, "cpu", seed=seed)
    data = draw_teachers(cfg, parts, batches, seed, k)
    held_out = default_held_out(batches) if held_out is None else held_out
    out = {}
    for name, critic in (("features", parts), ("pixels", pixel_parts(cfg, parts))):
        print(f"{name}:", file=sys.stderr)
        r = probe(cfg, critic, data, held_out=held_out, epochs=epochs, d_lr=cfg.optim.d_lr,
                  log=lambda s: print(s, file=sys.stderr, flush=True))
        h = r["held-out"]
        out[name] = {"edit": h["edit acc"], "video": h["video acc"], "train edit": r["train"]["edit acc"],
                     "train video": r["train"]["video acc"], "edit paired": h["edit paired"],
                     "edit by task": h["edit by task"]}
    out.update(run_controls(cfg, parts, data, held_out=held_out, epochs=epochs, d_lr=cfg.optim.d_lr,
                            log=lambda s: print(s, file=sys.stderr, flush=True)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "shapes" / "fdd.yaml"))
    ap.add_argument("--student", help="checkpoint folder (or LoRA file) whose edits are the fakes")
    ap.add_argument("--teacher-steps", type=int, help="fakes: the teachers' own samples at this many steps")
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--held-out", type=int, default=None, help="default: a fifth of --batches (at least 1)")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--d-lr", type=float, default=None, help="default: the config's optim.d_lr")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pixels", action="store_true",
                    help="also probe the same samples with the control critic on raw pixel patches")
    ap.add_argument("--controls", action="store_true",
                    help="also run the detail and blur controls (the detail control reads the shapes world's grain)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)
    if args.held_out is None:
        args.held_out = default_held_out(args.batches)
    if not 0 < args.held_out < args.batches:
        ap.error(f"--held-out must be between 1 and --batches - 1, got {args.held_out}")
    if args.student and args.teacher_steps:
        ap.error("--student and --teacher-steps choose different fakes: give one")
    if args.student and not Path(args.student).exists():
        ap.error(f"--student: {args.student} does not exist")
    cfg = load_config(args.config, args.overrides)
    if args.teacher_steps is not None and not 1 <= args.teacher_steps < cfg.fdd.real_steps:
        ap.error(f"--teacher-steps must be in [1, fdd.real_steps={cfg.fdd.real_steps}), got {args.teacher_steps}")
    torch.manual_seed(args.seed)
    parts = build_parts(cfg, "cpu", seed=args.seed)
    if parts.critic_step is None:
        ap.error("the config has fdd.use_adversarial=false: there are no discriminators to probe")
    if args.student:
        student = Path(args.student)
        load_lora_into(parts.model.unet, student / EVE_LORA_NAME if student.is_dir() else student)
    if args.teacher_steps:
        data = draw_teachers(cfg, parts, args.batches, args.seed, args.teacher_steps)
        what = f"teachers at {args.teacher_steps} steps against {cfg.fdd.real_steps}"
    else:
        data = draw(cfg, parts, args.batches, args.seed)
        what = "student against teachers"
    dist = lambda i, j: sum(float((d[i] - d[j]).abs().mean()) for d in data) / len(data)  # noqa: E731
    print(f"{what}: mean |fake - edit teacher| {dist(1, 3):.4f}, |fake - video teacher| {dist(2, 4):.4f} per pixel "
          f"on [-1, 1]\n")
    critics = [("features", parts)] + ([("pixel patches (control)", pixel_parts(cfg, parts))] if args.pixels else [])
    for name, critic in critics:
        if args.pixels:
            print(f"{name}:")
        probe(cfg, critic, data, held_out=args.held_out, epochs=args.epochs, d_lr=args.d_lr or cfg.optim.d_lr,
              log=lambda s: print(s, flush=True))
    if args.controls:
        run_controls(cfg, parts, data, held_out=args.held_out, epochs=args.epochs, d_lr=args.d_lr or cfg.optim.d_lr,
                     log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
