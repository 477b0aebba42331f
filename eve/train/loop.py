"""`train(cfg)`: the FDD training run, top to bottom (setup -> models -> data -> loop -> log -> checkpoint).

Randomness lives in explicit torch generators whose states are checkpointed, and the data order is a function of
(seed, epoch), so a run killed and resumed ends where an uninterrupted one does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from eve.config import portable_yaml, to_yaml
from eve.data.clips import CaptionRows, ClipDataset, collate
from eve.data.manifest import read_manifest
from eve.data.preflight import check_rows
from eve.errors import EveError
from eve.models.composed import EveModel
from eve.models.discriminator import DinoFeatures, EditDiscriminator, VideoDiscriminator, trainable_state_dict
from eve.models.loading import check_weight_refs, load_timm
from eve.models.lora import FAKE_EDIT, FAKE_VIDEO, EVE_LORA_NAME, export_diffusers_lora, load_lora_into
from eve.models.lora import lora_parameters, save_lora
from eve.train import checkpoint
from eve.train.augment import Augment
from eve.train.checks import validate
from eve.train.curves import plot_curves
from eve.train.ema import Ema, load_trained_state, trained_state
from eve.train.fdd import Batch, FakeScoreStep, FddDiscriminator, FddGenerator
from eve.train.identity import RunIdentity, check_same_run
from eve.train.real_samples import RealSampleCache, cache_dir, compute_and_store, compute_samples, datapoint_key
from eve.train.real_samples import teacher_fingerprint
from eve.train.samples import save_sample_grid
from eve.train.validation import load_scorer

logger = logging.getLogger(__name__)


class Cursor:
    """Position in the data order: epoch e is a permutation drawn from (seed, e); each rank takes its share."""

    def __init__(self, n: int, seed: int, epoch: int = 0, pos: int = 0):
        self.n, self.seed, self.epoch, self.pos = n, seed, epoch, pos
        self._order = self._perm(epoch)

    def _perm(self, epoch: int) -> list[int]:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch)).tolist()

    def take(self, count: int) -> list[int]:
        out = []
        while len(out) < count:
            if self.pos >= self.n:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._perm(self.epoch)
            out.append(self._order[self.pos])
            self.pos += 1
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}


def preflight(cfg, rows: pd.DataFrame) -> pd.DataFrame:
    """Every row's video decoded and its frames counted before any weight loads (eve/data/preflight.py): rows that
    cannot be used are listed, then stop the run (data.bad_rows=error) or are left out (skip)."""
    bad = check_rows(rows, cfg.model.num_frames, cfg.data.stride, workers=max(2, cfg.data.workers))
    if not bad:
        return rows
    for b in bad[:20]:
        logger.error("%s", b)
    if len(bad) > 20:
        logger.error("... and %d more rows", len(bad) - 20)
    if cfg.data.bad_rows == "skip" and len(bad) < len(rows):
        logger.warning("data.bad_rows=skip: training on the other %d of %d rows", len(rows) - len(bad), len(rows))
        return rows.drop(index=rows.index[[b.row for b in bad]]).reset_index(drop=True)
    raise EveError(f"{len(bad)} of {len(rows)} rows of {cfg.data.manifest} cannot be used, first {bad[0]}; fix or "
                   "remove them" + (", or set data.bad_rows=skip to train on the others" if len(bad) < len(rows) else ""))


def manifest_kind(cfg) -> str:
    """LoRA alignment's data are captions (paper §4.4: "we do not use images during training")."""
    return "captions" if cfg.fdd.mode == "lora_align" else "video"


def adversarial_at(cfg, step: int) -> bool:
    """Adversarial terms from iteration sds_only_steps on (paper: 1000); from the start when SDS is ablated."""
    return cfg.fdd.use_adversarial and (step >= cfg.fdd.sds_only_steps or not cfg.fdd.use_sds)


def critic_at(cfg, step: int) -> bool:
    """Whether the discriminators train at this iteration: with the adversarial terms, and for disc_warmup_steps
    iterations before them, so that the generator's first hinge gradients come from a critic that already tells
    teacher samples from the student's (paper-notes OQ-10: the paper starts both together; a D at chance feeds the
    generator near-random directions)."""
    f = cfg.fdd
    return adversarial_at(cfg, step) or (f.use_adversarial and step >= f.sds_only_steps - f.disc_warmup_steps)


@dataclass
class Parts:
    model: EveModel
    lora: list
    discs: tuple | None
    head_params: list
    gen: torch.Generator
    generator_step: FddGenerator
    critic_step: FddDiscriminator | None
    fake: list  # the fake scores' LoRA weights (fdd.score=dmd), else empty
    fake_step: FakeScoreStep | None


def build_parts(cfg, device, seed: int = 0) -> Parts:
    """The frozen model with a fresh student LoRA (fp32), the discriminators, and both objective modules."""
    model = EveModel.from_config(cfg.model).to(device)
    lora_align = cfg.fdd.mode == "lora_align"
    model.temporal = not lora_align  # LoRA alignment: single images, no temporal layers (paper §4.4)
    model.add_lora(cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.lora_targets)
    lora = lora_parameters(model.unet)
    for p in lora:
        p.data = p.data.float()  # trainable parameters in fp32 whatever the frozen dtype
    logger.info("trainable LoRA parameters: %d", sum(p.numel() for p in lora))
    fake = []
    if cfg.fdd.score == "dmd" and cfg.fdd.use_sds:  # one fake score per teacher, zero-initialised: = the teacher
        for adapter in FAKE_EDIT, FAKE_VIDEO:
            model.add_lora(cfg.fdd.fake_rank or cfg.model.lora_rank, None, cfg.model.lora_targets, adapter=adapter)
            fake += lora_parameters(model.unet, adapter)
        for p in fake:
            p.data = p.data.float()
    gen = torch.Generator().manual_seed(seed)
    discs = None
    if cfg.fdd.use_adversarial:
        features = DinoFeatures(load_timm(cfg.model.dino), cfg.disc.hooks).to(device)
        d = cfg.disc
        text_dim = model.text.encoder.config.hidden_size
        # LoRA alignment's second critic: D_v without its temporal layer, an image discriminator with text
        # conditioning (the paper does not describe it; paper-notes §4)
        discs = (EditDiscriminator(features, text_dim, d.channels, d.cmap_dim, d.heads).to(device),
                 VideoDiscriminator(features, text_dim, d.channels, d.cmap_dim, d.heads,
                                    1 if lora_align else cfg.model.num_frames, temporal=not lora_align).to(device))
    heads = list({id(p): p for m in (discs or ()) for p in m.parameters() if p.requires_grad}.values())
    d = cfg.disc
    aug = Augment(colour=d.augment_colour, translate=d.translate_fraction, cutout=d.cutout_fraction)
    return Parts(model, lora, discs, heads, gen, FddGenerator(model, cfg.fdd, discs, gen, aug),
                 FddDiscriminator(*discs, cfg.fdd, gen, aug) if discs else None,
                 fake, FakeScoreStep(model, cfg.fdd, gen) if fake else None)


def train(cfg) -> Path:
    """Run (or resume) FDD; returns the last checkpoint folder. Everything checkable (config, manifest, whether
    out_dir holds this run) is checked before any weight loads; a run that fails before its first step leaves no
    folder behind."""
    validate(cfg)
    check_weight_refs(cfg.model)
    rows = read_manifest(cfg.data.manifest, kind=manifest_kind(cfg))
    if manifest_kind(cfg) == "video":
        rows = preflight(cfg, rows)
    out = Path(cfg.run.out_dir)  # validate checked that it can be made and written
    identity = RunIdentity.of(cfg, rows)
    check_same_run(out, identity, resume=cfg.run.resume, checkpoints=checkpoint.checkpoints(out))
    ckpt = checkpoint.find_resume(out, cfg.run.resume)
    fresh = not out.exists()
    progress = {"steps": 0}
    try:
        return _train(cfg, rows, out, identity, ckpt, progress)
    except BaseException:
        if fresh and progress["steps"] == 0 and int(os.environ.get("RANK", "0")) == 0:
            shutil.rmtree(out, ignore_errors=True)  # nothing was trained: leave nothing behind (main process only)
        raise


def _train(cfg, rows, out: Path, identity: RunIdentity, ckpt: Path | None, progress: dict) -> Path:
    from accelerate import Accelerator

    run = cfg.run
    acc = Accelerator(mixed_precision=run.mixed_precision)
    world, rank = acc.num_processes, acc.process_index
    per_step = run.batch_size // run.micro_batch
    if per_step % world:
        raise EveError(f"run.batch_size / run.micro_batch = {per_step} micro-batches is not divisible by {world} processes")
    accum = per_step // world
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_partial(out)  # a kill during a checkpoint write left its temporary folder
        (out / "config.yaml").write_text(to_yaml(cfg))
        identity.write(out)
    torch.manual_seed(run.seed + rank)

    # Build models: one frozen EveModel (teachers are switches), LoRA, discriminators on one frozen DINO
    parts = build_parts(cfg, acc.device, seed=run.seed * 1000 + rank)
    model, discs, gen, lora = parts.model, parts.discs, parts.gen, parts.lora
    generator_step, critic_step = parts.generator_step, parts.critic_step
    opt_g = torch.optim.AdamW(lora, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), weight_decay=cfg.optim.weight_decay)
    head_params = parts.head_params
    opt_d = torch.optim.Adam(head_params, lr=cfg.optim.d_lr, betas=tuple(cfg.optim.d_betas)) if discs else None
    for p in parts.fake:  # the fake scores stay out of DDP's gradient sync: they train in their own turn
        p.requires_grad_(False)
    generator_step, opt_g = acc.prepare(generator_step, opt_g)
    for p in parts.fake:
        p.requires_grad_(True)
    _broadcast(acc, parts.fake)  # so every process starts from rank 0's fake LoRAs, as DDP does for the student
    if critic_step is not None:
        critic_step, opt_d = acc.prepare(critic_step, opt_d)
    opt_f = torch.optim.Adam(parts.fake, lr=cfg.fdd.fake_lr) if parts.fake else None

    # Resume (the LoRA file holds the EMA when the run kept one; train_state then holds the trained weights)
    ema = Ema(lora, cfg.fdd.ema_decay) if cfg.fdd.ema_decay > 0 else None
    cursor = Cursor(len(rows), run.seed)
    start = 0
    if ckpt is not None:
        state, tensors = checkpoint.load_state(ckpt)
        load_lora_into(model.unet, ckpt / EVE_LORA_NAME)
        if ema is not None:
            ema.reset()
        load_trained_state(model.unet, tensors, "student")
        opt_g.load_state_dict(checkpoint.unflatten_optimizer(tensors, state["optimizers"]["opt_g"], "opt_g"))
        if opt_f is not None and "opt_f" in state["optimizers"]:
            for adapter in FAKE_EDIT, FAKE_VIDEO:
                load_trained_state(model.unet, tensors, adapter, adapter)
            opt_f.load_state_dict(checkpoint.unflatten_optimizer(tensors, state["optimizers"]["opt_f"], "opt_f"))
        elif opt_f is not None:
            logger.info("%s holds no fake scores (an SDS run): they start from the teachers", ckpt)
        if discs and (ckpt / "discriminator.safetensors").is_file():
            from safetensors.torch import load_file

            disc_sd = load_file(str(ckpt / "discriminator.safetensors"))
            for name, d in zip(("edit", "video"), discs):
                d.load_state_dict({k[len(name) + 1 :]: v for k, v in disc_sd.items() if k.startswith(name + ".")}, strict=False)
            if "opt_d" in state["optimizers"]:
                opt_d.load_state_dict(checkpoint.unflatten_optimizer(tensors, state["optimizers"]["opt_d"], "opt_d"))
        gen.set_state(tensors[f"rng/gen{rank}"] if f"rng/gen{rank}" in tensors else tensors["rng/gen0"])
        cursor = Cursor(len(rows), run.seed, **state["cursor"])
        start = state["step"]
        logger.info("resumed from %s at step %d", ckpt, start)
    if acc.is_main_process:
        _truncate_metrics(out / "metrics.jsonl", start)  # a fresh start in a used folder logs from scratch

    # Build data
    size = cfg.data.size or cfg.model.resolution
    if size % model.size_multiple:
        raise EveError(f"training size {size} is not a multiple of the model's size multiple {model.size_multiple}")
    lora_align = cfg.fdd.mode == "lora_align"
    dataset = CaptionRows(rows) if lora_align else ClipDataset(rows, cfg.model.num_frames, cfg.data.stride, size)
    cache = RealSampleCache(cache_dir(cfg)) if cfg.fdd.real_samples == "cache" else None
    fingerprint = teacher_fingerprint(cfg)
    pool = ThreadPoolExecutor(cfg.data.workers) if cfg.data.workers > 0 else None

    def load(indices: list[int]) -> dict:
        items = list(pool.map(dataset.__getitem__, indices)) if pool else [dataset[i] for i in indices]
        return collate(items)

    def prepare(raw: dict, need_real: bool) -> Batch:
        return make_batch(cfg, model, rows, raw, gen=gen, need_real=need_real, cache=cache, fingerprint=fingerprint)

    # Train
    metrics_file = out / "metrics.jsonl"
    scorer = load_scorer(cfg, model) if run.eval_every and acc.is_main_process else None
    if scorer is not None and start == 0:  # where the student starts: plug-and-play
        _log_row(metrics_file, {"step": 0, "phase": "validation"} | _validate(scorer, model, ema), out)
    bar = tqdm(range(start, run.steps), initial=start, total=run.steps, desc="fdd", disable=not acc.is_main_process)
    last = ckpt
    sample_raw = load(list(range(min(run.micro_batch, len(rows)))))
    for step in bar:
        t0 = time.perf_counter()
        adversarial, critic = adversarial_at(cfg, step), critic_at(cfg, step)
        logs: list[dict] = []
        saved, generated = [], []
        _requires_grad(discs, False)
        opt_g.zero_grad(set_to_none=True)
        for micro in range(accum):
            ids = cursor.take(run.micro_batch * world)[rank * run.micro_batch : (rank + 1) * run.micro_batch]
            b = prepare(load(ids), critic)
            sync = acc.no_sync(generator_step) if micro + 1 < accum else nullcontext()
            with sync, acc.autocast():
                res = generator_step(b, adversarial)
                acc.backward(res["loss"] / accum)
            logs.append(res["logs"])
            generated.append((b, res["x0"], res["known"]))
            if critic:
                fake = res["fake"]
                if fake is None:  # D warm-up: the student's edit decoded without its graph
                    with torch.no_grad():
                        fake = model.decode_video(res["x0"])
                saved.append((b, fake))
        gnorm = acc.clip_grad_norm_(lora, cfg.optim.grad_clip) if cfg.optim.grad_clip > 0 else _grad_norm(lora)
        opt_g.step()
        if ema is not None:
            ema.update()
        if opt_f is not None:
            logs += _fake_turn(acc, parts.fake_step, opt_f, parts.fake, generated, cfg.fdd.fake_updates)
        if critic:
            logs += _critic_turn(acc, model, discs, critic_step, opt_d, saved,
                                 acc.unwrap_model(generator_step).disc_frames)
        phase = "adversarial" if adversarial else "disc_warmup" if critic else "sds"
        row = _mean_logs(logs) | {"step": step + 1, "phase": phase,
                                  "gnorm_student": float(gnorm), "step_time": time.perf_counter() - t0}
        if scorer is not None and ((step + 1) % run.eval_every == 0 or step + 1 == run.steps):
            row |= _validate(scorer, model, ema)
        validated = any(k.startswith("val_") for k in row)
        if acc.is_main_process and ((step + 1) % run.log_every == 0 or step + 1 == run.steps or validated):
            _log_row(metrics_file, row, out if validated else None)
            bar.set_postfix(loss=f"{row.get('loss_g', 0):.4f}", phase=row["phase"])
        if acc.is_main_process and run.sample_every and ((step + 1) % run.sample_every == 0 or step + 1 == run.steps):
            with ema.applied() if ema is not None else nullcontext():  # the student as it is exported
                save_sample_grid(out / "samples" / f"step_{step + 1:06d}.png", model, prepare(sample_raw, False),
                                 cfg.fdd.k, run.seed)
        if (step + 1) % run.save_every == 0 or step + 1 == run.steps:
            _check_replicas(acc, lora + head_params + parts.fake)
            acc.wait_for_everyone()
            if acc.is_main_process:
                last = _save(cfg, out, step + 1, model, discs, opt_g, opt_d, gen, rank, cursor, ema, opt_f)
        progress["steps"] += 1
    bar.close()
    if pool:
        pool.shutdown()
    return last


def make_batch(cfg, model, rows, raw: dict, *, gen, need_real: bool, need_f1: bool = True, cache=None,
               fingerprint: str = "") -> Batch:
    """A collated micro-batch -> Batch: text embeddings, f1 and (when needed) the teachers' real samples; in LoRA
    alignment the input images too (sampled, never read). need_f1=False with need_real=False samples no teacher at
    all (f1 None): the frames and texts a critic reads. `cache` (with the teachers' `fingerprint`): where the
    teachers' samples are kept; None computes them online."""
    if cfg.fdd.mode == "lora_align" and not need_f1:
        raise ValueError("make_batch: need_f1=False has no input frames in LoRA alignment (they are sampled)")
    s = (_teacher_latents(cfg, model, rows, raw, gen=gen, need_real=need_real, cache=cache, fingerprint=fingerprint)
         if need_real or need_f1 else {})
    cap, ins = raw["caption"], raw["instruction"]
    if cfg.fdd.mode == "lora_align":
        frames, f1, second = model.decode_video(s["input"]).clamp(-1, 1), None, s["lora"]
    else:
        frames, f1, second = raw["frames"].to(model.device), s["edit"][:, 0] if s else None, s.get("video")
    return Batch(frames=frames, caption=model.encode_text(cap), instruction=model.encode_text(ins),
                 caption_pooled=model.text.pooled(cap).float(), instruction_pooled=model.text.pooled(ins).float(),
                 task=raw["task"].to(model.device), f1=f1, real_edit=s["edit"] if need_real else None,
                 real_video=second if need_real else None)


def _teacher_latents(cfg, model, rows, raw, *, gen, need_real, cache, fingerprint) -> dict[str, torch.Tensor]:
    """The teachers' samples of a micro-batch (eve.train.real_samples.compute_samples): from the cache (the missing
    rows computed together, each with its own noise, and stored) or online."""
    if cache is None:
        return compute_samples(cfg, model, raw, gen, video=need_real)
    keys = [datapoint_key(rows.iloc[i], fingerprint) for i in raw["index"].tolist()]
    entries = [cache.get(k) for k in keys]
    missing = [j for j, e in enumerate(entries) if e is None]
    if missing:
        sub = {k: v[missing] if isinstance(v, torch.Tensor) else [v[j] for j in missing] for k, v in raw.items()}
        for j, entry in zip(missing, compute_and_store(cfg, model, cache, sub, [keys[j] for j in missing])):
            entries[j] = entry
    return {k: torch.stack([e[k] for e in entries]).to(model.device) for k in entries[0]}


def _critic_turn(acc, model, discs, critic_step, opt_d, saved: list, disc_frames) -> list[dict]:
    """One optimizer step of both discriminators on the micro-batches' (batch, student frames): the teachers'
    samples are the reals."""
    _requires_grad(discs, True)
    opt_d.zero_grad(set_to_none=True)
    logs = []
    for micro, (b, fake) in enumerate(saved):
        frames_e = disc_frames(b.frames.shape[1])
        with torch.no_grad():
            real_e, real_v = model.decode_video(b.real_edit), model.decode_video(b.real_video)
        sync = acc.no_sync(critic_step) if micro + 1 < len(saved) else nullcontext()
        with sync, acc.autocast():
            d = critic_step(fake, real_e, real_v, b, frames_e)
            acc.backward(d["loss"] / len(saved))
        logs.append(d["logs"])
    opt_d.step()
    return logs


def _fake_turn(acc, fake_step, opt_f, params: list, generated: list, updates: int) -> list[dict]:
    """fdd.fake_updates optimizer steps of the fake scores on this step's student outputs (batch, x0, known), fresh
    (t, eps) each time; gradients averaged over processes by hand (the fake LoRAs live inside the generator's
    model, which DDP wraps for the student's turn only)."""
    logs = []
    for _ in range(updates):
        opt_f.zero_grad(set_to_none=True)
        for b, x0, known in generated:
            with acc.autocast():
                res = fake_step(x0, b, known)
                (res["loss"] / len(generated)).backward()
            logs.append(res["logs"])
        if acc.num_processes > 1:
            for p in params:
                if p.grad is not None:
                    p.grad = acc.reduce(p.grad, reduction="mean")
        opt_f.step()
    return logs


def _broadcast(acc, params: list) -> None:
    if acc.num_processes > 1 and params:
        import torch.distributed as dist

        for p in params:
            dist.broadcast(p.data, src=0)


def _validate(scorer, model, ema: Ema | None) -> dict:
    """The validation scorer's metrics of the student as it is exported (the EMA when kept), as val_* fields."""
    with ema.applied() if ema is not None else nullcontext(), torch.no_grad():
        return {f"val_{k}": float(v) for k, v in scorer(model).items()}


def _log_row(path: Path, row: dict, curves_dir: Path | None) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    if curves_dir is not None:
        plot_curves(path, curves_dir / "curves.png")


def _save(cfg, out, step, model, discs, opt_g, opt_d, gen, rank, cursor, ema: Ema | None, opt_f=None) -> Path:
    """A checkpoint whose LoRA files hold the student to use (the EMA when kept) and whose train state holds what
    resuming needs (then also the trained LoRA)."""

    def write_lora(folder: Path) -> None:
        # weight paths relative to the checkpoint: it works on another machine with the weights beside it
        with ema.applied() if ema is not None else nullcontext():
            save_lora(model.unet, folder / EVE_LORA_NAME, config_yaml=portable_yaml(cfg, folder),
                      extra={"step": step, "saved_at": checkpoint.folder(out, step).resolve()})
            export_diffusers_lora(model.unet, folder)  # at the folder's top, where load_lora_weights(folder) looks

    disc_state = {}
    for name, d in zip(("edit", "video"), discs or ()):
        disc_state |= {f"{name}.{k}": v for k, v in trainable_state_dict(d).items()}
    optimizers = {"opt_g": opt_g} | ({"opt_d": opt_d} if opt_d is not None else {}) | (
        {"opt_f": opt_f} if opt_f is not None else {})
    tensors = trained_state(model.unet, "student") if ema is not None else {}
    if opt_f is not None:  # the fake scores train on: resuming needs them as they are
        tensors |= trained_state(model.unet, FAKE_EDIT, FAKE_EDIT) | trained_state(model.unet, FAKE_VIDEO, FAKE_VIDEO)
    return checkpoint.save(out, step, write_lora=write_lora, disc_state=disc_state, optimizers=optimizers,
                           rng={f"gen{rank}": gen.get_state()}, state={"cursor": cursor.state()},
                           keep_last=cfg.run.keep_last,
                           tensors=tensors or None)


def _check_replicas(acc, params) -> None:
    """Data-parallel replicas must hold identical trainable weights; compare a checksum across processes."""
    if acc.num_processes == 1:
        return
    local = torch.stack([p.detach().float().sum() for p in params]).sum().reshape(1).to(acc.device)
    every = acc.gather(local)
    if not torch.allclose(every, every[0].expand_as(every), rtol=1e-5, atol=1e-6):
        raise RuntimeError(f"data-parallel replicas diverged: trainable-weight checksums {every.tolist()}")
    logger.info("replicas in sync (checksum %.6f on %d processes)", float(every[0]), acc.num_processes)


def _requires_grad(discs, flag: bool) -> None:
    for d in discs or ():
        for name, p in d.named_parameters():
            if not name.startswith("features."):
                p.requires_grad_(flag)


def _grad_norm(params) -> float:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return float(torch.stack(grads).norm()) if grads else 0.0


def _mean_logs(logs: list[dict]) -> dict:
    keys = {k for d in logs for k in d}
    out = {}
    for k in sorted(keys):
        vals = [d[k] for d in logs if k in d]
        out[k] = vals[0] if isinstance(vals[0], list) else sum(vals) / len(vals)
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop lines logged after the checkpoint we resume from (they will be logged again); a fresh start (step 0)
    drops them all, the step-0 validation row included."""
    if path.is_file():
        keep = [line for line in path.read_text().splitlines()
                if line and step > 0 and json.loads(line).get("step", 0) <= step]
        path.write_text("".join(line + "\n" for line in keep))
