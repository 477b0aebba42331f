"""Train the shapes world's frozen parts from scratch, each with only the data its role may see (issue 9), and save
them in the same diffusers / transformers / timm layouts as real weights (architectures: `nets.py`):

1. autoencoder: an AutoencoderKL (downsampling 2, 4 latent channels) on frames of every kind, so the backbone is a
   latent one like SD's and the adversarial path decodes with gradient;
2. backbone: a word-level CLIP tokenizer, a CLIPTextModel and a latent UNet2DConditionModel trained together on
   (frame, caption) pairs of every state an edit can produce; v-prediction with zero-terminal SNR, or SD-1.5's
   epsilon prediction (`PREDICTIONS`);
3. edit adapter: a ControlNetModel (copies of the backbone's down and middle blocks, task embeddings) trained on
   image-edit pairs only, on the frozen backbone;
4. video adapter: a MotionAdapter and its trained first-frame input, a SparseControlNetModel that sees the known
   latents concatenated with a frame mask (dropped 10% of the time, as Emu Video conditions on an image), trained
   together on plain videos only: never a pattern, a style or an edit, so edited content is outside what it has
   seen, as ip2p edits are for AnimateDiff;
5. critic features: a small ViT in timm's DINOv2 architecture (patch 4), self-supervised on clean frames by masked
   patch reconstruction: nothing teaches it invariance to noise, blur or a redrawn pattern.

No stage ever sees a held-out scene (`data.draw`). Each stage keeps EMA weights, writes its folder atomically and is
skipped when its folder exists, so an interrupted `train-teachers` resumes at the stage it was in. With `init` (an
earlier teachers folder) a stage continues from that folder's weights instead of random ones, on fresh data (its own
seed), and its log continues the earlier log's step count; a stage run alone (`only`) also takes from that folder
the parts it needs and its own folder lacks (the backbone the autoencoder, an adapter the backbone).
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from eve.diffusion.schedule import NoiseSchedule
from eve.errors import EveError
from eve.models.tiny import write_sd_index
from eve.tasks import TASKS
from eve.worlds.shapes import nets
from eve.worlds.shapes import world as W
from eve.worlds.shapes.data import draw

logger = logging.getLogger(__name__)

KNOWN_DROP = 0.1  # the first-frame input is empty this often (unconditional video generation stays possible)


# The backbone's parametrisation, chosen once by the backbone stage and read back from its scheduler config by every
# later stage. v_prediction: v-prediction with zero-terminal SNR (the committed set), the fix that lets a few steps
# work [Lin et al. 2024]. epsilon: SD-1.5's own, epsilon prediction on the scaled-linear schedule whose terminal SNR
# is not zero (epsilon cannot be trained at zero terminal SNR). The fourth round tried epsilon; docs/proving-ground.md "Gates" has it.
ZERO_TERMINAL_SNR = {"v_prediction": True, "epsilon": False}  # each parametrisation's schedule, trained and saved
PREDICTIONS = tuple(ZERO_TERMINAL_SNR)


def schedule(prediction: str) -> NoiseSchedule:
    return NoiseSchedule.from_config(prediction_type=prediction, zero_terminal_snr=ZERO_TERMINAL_SNR[prediction])


def backbone_schedule(root: Path) -> NoiseSchedule:
    """The schedule the backbone in `root` was trained with (its scheduler config): the adapters train against it."""
    from eve.models.build import schedule_from
    from eve.models.loading import load_scheduler_config

    return schedule_from(load_scheduler_config(str(root / "sd")), where=str(root / "sd"))


class EMA:
    def __init__(self, module: nn.Module, decay: float = 0.999):
        self.decay, self.n = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def copy_to(self, module: nn.Module) -> None:
        module.load_state_dict(self.shadow)


def encode_text(tokenizer, encoder, texts: list[str]) -> torch.Tensor:
    ids = tokenizer(texts, padding="max_length", max_length=nets.MAX_TOKENS, truncation=True,
                    return_tensors="pt").input_ids
    return encoder(ids).last_hidden_state


def _drop(texts: list[str], p: float, rng: random.Random) -> list[str]:
    return ["" if rng.random() < p else t for t in texts]


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list, ema: EMA | None, module: nn.Module,
             step: int, peak_lr: float, warmup: int = 200) -> None:
    """Linear warm-up to peak_lr, backward, clip at 1, step, EMA update."""
    for g in opt.param_groups:
        g["lr"] = peak_lr * min(1.0, (step + 1) / warmup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    if ema is not None:
        ema.update(module)


class Stage:
    """Folder, progress bar, metrics.jsonl and atomic save of one training stage."""

    def __init__(self, root: Path, name: str, steps: int, init: Path | None = None):
        self.final = root / name
        self.tmp = self.final.parent / f".{self.final.name}.tmp"
        self.log = root / "logs" / f"{name.replace('/', '_')}.jsonl"
        self.steps = steps
        self.init = init / name if init else None  # the earlier weights this stage continues from
        self.earlier_log = init / "logs" / self.log.name if init else None
        self.offset = 0
        self.t0 = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.final.exists()

    def begin(self, seed: int) -> random.Random:
        """Fresh temporary folder and log (a continuation's log starts as a copy of the earlier one); seeds torch;
        returns the stage's data generator (a continuation draws other data than the run it continues)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)  # also makes the parent (sd/) for the backbone's stages
        self.log.parent.mkdir(parents=True, exist_ok=True)
        earlier = self.earlier_log.read_text() if self.earlier_log and self.earlier_log.exists() else ""
        self.offset = 1 + max((json.loads(line)["step"] for line in earlier.splitlines()), default=-1)
        self.log.write_text(earlier)
        seed += 7919 * self.offset  # a continuation must not replay the data its first run saw
        torch.manual_seed(seed)
        return random.Random(seed)

    def record(self, step: int, **values) -> None:
        line = {"step": self.offset + step, "seconds": round(time.perf_counter() - self.t0, 1), **values}
        with open(self.log, "a") as f:
            f.write(json.dumps(line) + "\n")

    def progress(self, desc: str):
        return tqdm(range(self.steps), desc=desc, mininterval=10, maxinterval=30)

    def finish(self) -> None:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.final)


def frames(rng: random.Random, n: int) -> tuple[list[W.Scene], torch.Tensor]:
    """n backbone scenes and one random frame of each, [n, 3, S, S]."""
    scenes = [draw(W.backbone_scene, rng) for _ in range(n)]
    return scenes, torch.stack([W.render(sc, rng.randrange(W.NUM_FRAMES)) for sc in scenes])


# ---------------------------------------------------------------------------------------------- 1. autoencoder


def train_autoencoder(root: Path, steps: int, batch: int, seed: int, init: Path | None = None) -> None:
    """L1 + L2 reconstruction with a small KL term; the scaling factor makes the latents unit-variance (as SD's)."""
    from diffusers import AutoencoderKL

    st = Stage(root, "sd/vae", steps, init)
    if st.done:
        return
    rng = st.begin(seed + 10)
    vae = AutoencoderKL.from_pretrained(st.init) if st.init else nets.autoencoder()
    params = list(vae.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    ema = EMA(vae)
    for step in st.progress("autoencoder"):
        _, x = frames(rng, batch)
        post = vae.encode(x).latent_dist
        y = vae.decode(post.sample()).sample
        rec = (y - x).abs().mean() + (y - x).pow(2).mean()
        loss = rec + 1e-6 * post.kl().mean()
        optimise(opt, loss, params, ema, vae, step, 2e-3, warmup=100)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(rec.detach()))
    ema.copy_to(vae)
    with torch.no_grad():
        _, x = frames(rng, 256)
        z = vae.encode(x).latent_dist.mean
        y = vae.decode(z).sample
    vae.register_to_config(scaling_factor=float(1 / z.std()))
    st.record(steps, psnr_held=float(10 * torch.log10(4 / (y - x).pow(2).mean())), latent_std=float(z.std()))
    vae.save_pretrained(st.tmp)
    st.finish()


def load_autoencoder(root: Path):
    from diffusers import AutoencoderKL

    from eve.models.codec import VaeCodec

    vae = AutoencoderKL.from_pretrained(root / "sd", subfolder="vae").requires_grad_(False).eval()
    return VaeCodec(vae)


def latents(codec, x: torch.Tensor) -> torch.Tensor:
    """[N, 3, S, S] or [B, F, 3, S, S] pixels -> scaled latents of the same leading shape."""
    with torch.no_grad():
        return codec.encode(x[:, None]).squeeze(1) if x.dim() == 4 else codec.encode(x)


# ---------------------------------------------------------------------------------------------- 2. backbone


def train_backbone(root: Path, steps: int, batch: int, seed: int, init: Path | None, prediction: str) -> None:
    from diffusers import DDIMScheduler

    st = Stage(root, "sd/unet", steps, init)
    if st.done:
        return
    rng = st.begin(seed)
    codec = load_autoencoder(root)
    tok = nets.word_tokenizer(W.VOCABULARY)
    if init:
        _, te, net = load_backbone(init)
        te.requires_grad_(True).train(), net.requires_grad_(True).train()
    else:
        te, net = nets.text_encoder(len(tok)), nets.unet()
    params = list(te.parameters()) + list(net.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    s = schedule(prediction)
    both = nn.ModuleList([net, te])
    ema = EMA(both)
    for step in st.progress("backbone"):
        scenes, x = frames(rng, batch)
        x0 = latents(codec, x)
        h = encode_text(tok, te, _drop([W.caption(sc) for sc in scenes], 0.1, rng))
        t = torch.randint(0, 1000, (batch,))
        eps = torch.randn_like(x0)
        loss = F.mse_loss(net(s.add_noise(x0, eps, t), t, h).sample, s.output_from(x0, eps, t))
        optimise(opt, loss, params, ema, both, step, 1e-3)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    ema.copy_to(both)
    sd = st.tmp.parent / ".sd-parts.tmp"
    shutil.rmtree(sd, ignore_errors=True)
    te.save_pretrained(sd / "text_encoder")
    tok.save_pretrained(sd / "tokenizer")
    DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  prediction_type=prediction, rescale_betas_zero_snr=ZERO_TERMINAL_SNR[prediction],
                  timestep_spacing="trailing", clip_sample=False,
                  set_alpha_to_one=False).save_pretrained(sd / "scheduler")
    for part in ("text_encoder", "tokenizer", "scheduler"):
        shutil.rmtree(root / "sd" / part, ignore_errors=True)
        os.replace(sd / part, root / "sd" / part)
    shutil.rmtree(sd)
    net.save_pretrained(st.tmp)
    st.finish()  # the unet folder last: its presence marks the whole backbone done
    write_sd_index(root / "sd")  # stock StableDiffusionPipeline.from_pretrained(root / "sd") loads the backbone


def load_backbone(root: Path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sd = root / "sd"
    net = UNet2DConditionModel.from_pretrained(sd, subfolder="unet").requires_grad_(False).eval()
    te = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder").requires_grad_(False).eval()
    return CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"), te, net


# ---------------------------------------------------------------------------------------------- 3. edit adapter


def edit_pairs(rng: random.Random, n: int) -> tuple[list[int], list[str], list[str], torch.Tensor, torch.Tensor]:
    """n image-edit pairs from training scenes: (task ids, instructions, output captions, source, target) frames."""
    tasks, ins, caps, src, tgt = [], [], [], [], []
    for _ in range(n):
        scene = draw(W.source_scene, rng)
        k = rng.randrange(len(TASKS))
        instruction, target = W.edit(scene, TASKS[k], rng)
        f = rng.randrange(W.NUM_FRAMES)
        tasks.append(k), ins.append(instruction), caps.append(W.caption(target))
        src.append(W.render(scene, f)), tgt.append(W.render(target, f))
    return tasks, ins, caps, torch.stack(src), torch.stack(tgt)


def train_controlnet(root: Path, steps: int, batch: int, seed: int, init: Path | None = None) -> None:
    from diffusers import ControlNetModel

    st = Stage(root, "controlnet", steps, init)
    if st.done:
        return
    rng = st.begin(seed + 1)
    codec = load_autoencoder(root)
    tok, te, net = load_backbone(root)
    cn = ControlNetModel.from_pretrained(st.init) if st.init else nets.controlnet(net)
    opt = torch.optim.AdamW(cn.parameters(), lr=5e-4)
    ema = EMA(cn)
    s = backbone_schedule(root)
    for step in st.progress("edit adapter"):
        tasks, ins, caps, src, tgt = edit_pairs(rng, batch)
        x0 = latents(codec, tgt)
        with torch.no_grad():
            cap = encode_text(tok, te, _drop(caps, 0.1, rng))
            ins_h = encode_text(tok, te, _drop(ins, 0.1, rng))
        keep = torch.tensor([rng.random() >= 0.05 for _ in range(batch)], dtype=torch.float32).view(-1, 1, 1, 1)
        t = torch.randint(0, 1000, (batch,))
        eps = torch.randn_like(x0)
        xt = s.add_noise(x0, eps, t)
        down, mid = cn(xt, t, encoder_hidden_states=ins_h, controlnet_cond=(src + 1) / 2,
                       class_labels=torch.tensor(tasks), return_dict=False)
        pred = net(xt, t, cap, down_block_additional_residuals=[d * keep for d in down],
                   mid_block_additional_residual=mid * keep).sample  # image dropout: the dual-CFG null image
        loss = F.mse_loss(pred, s.output_from(x0, eps, t))
        optimise(opt, loss, list(cn.parameters()), ema, cn, step, 5e-4)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    ema.copy_to(cn)
    cn.save_pretrained(st.tmp)
    st.finish()


# ---------------------------------------------------------------------------------------------- 4. video adapter


def known_mask(rng: random.Random, num_frames: int) -> torch.Tensor:
    """[F] bool: nothing known (KNOWN_DROP), else the first frame, sometimes the first 2-3 (sliding windows)."""
    mask = torch.zeros(num_frames, dtype=torch.bool)
    if rng.random() >= KNOWN_DROP:
        mask[: rng.choices([1, 2, 3], weights=[8, 1, 1])[0]] = True
    return mask


def train_video_adapter(root: Path, steps: int, clips: int, seed: int, init: Path | None = None) -> None:
    from diffusers import MotionAdapter, SparseControlNetModel, UNetMotionModel

    st = Stage(root, "motion_adapter", steps, init)
    if st.done:
        return
    rng = st.begin(seed + 2)
    codec = load_autoencoder(root)
    tok, te, net = load_backbone(root)
    if init:
        adapter = MotionAdapter.from_pretrained(st.init)
        sparse = SparseControlNetModel.from_pretrained(init / "sparsectrl")
    else:
        adapter = nets.motion_adapter()
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                torch.nn.init.zeros_(p)  # identity at the start (AnimateDiff's zero-initialised output projection)
        sparse = nets.first_frame_net(net)
    video_unet = UNetMotionModel.from_unet2d(net, adapter)
    video_unet.requires_grad_(False)
    params = [p for n, p in video_unet.named_parameters() if "motion_modules" in n]
    for p in params:
        p.requires_grad_(True)
    params += list(sparse.parameters())
    opt = torch.optim.AdamW(params, lr=5e-4)
    both = nn.ModuleList([video_unet, sparse])
    ema = EMA(both)
    s = backbone_schedule(root)
    F_ = W.NUM_FRAMES
    for step in st.progress("video adapter"):
        scenes = [draw(W.source_scene, rng) for _ in range(clips)]  # plain videos only
        x0 = latents(codec, torch.stack([W.render_video(sc, F_) for sc in scenes]))  # [B, F, C, h, w]
        with torch.no_grad():
            cap = encode_text(tok, te, _drop([W.caption(sc) for sc in scenes], 0.1, rng)).repeat_interleave(F_, 0)
        masks = torch.stack([known_mask(rng, F_) for _ in range(clips)]).float()  # [B, F]
        m5 = masks.view(clips, F_, 1, 1, 1)
        cond = (x0 * m5).permute(0, 2, 1, 3, 4)
        cond_mask = m5.expand(-1, -1, 1, *x0.shape[-2:]).permute(0, 2, 1, 3, 4)
        t = torch.randint(0, 1000, (clips,))
        eps = torch.randn_like(x0)
        xt = s.add_noise(x0, eps, t).permute(0, 2, 1, 3, 4)
        down, mid = sparse(xt, t, encoder_hidden_states=cap, controlnet_cond=cond, conditioning_mask=cond_mask,
                           return_dict=False)
        pred = video_unet(xt, t, cap, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample.permute(0, 2, 1, 3, 4)
        loss = F.mse_loss(pred, s.output_from(x0, eps, t))
        optimise(opt, loss, params, ema, both, step, 5e-4)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    ema.copy_to(both)
    sparse_dir = root / ".sparsectrl.tmp"
    shutil.rmtree(sparse_dir, ignore_errors=True)
    sparse.save_pretrained(sparse_dir)
    shutil.rmtree(root / "sparsectrl", ignore_errors=True)
    os.replace(sparse_dir, root / "sparsectrl")
    video_unet.save_motion_modules(str(st.tmp))
    st.finish()  # the motion adapter last: its presence marks the video adapter done


# ---------------------------------------------------------------------------------------------- 5. critic features

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def train_features(root: Path, steps: int, batch: int, seed: int, mask_ratio: float = 0.5,
                   init: Path | None = None) -> None:
    """Masked patch reconstruction on clean frames: half the patches are blanked in the input and every patch is
    reconstructed from the tokens, so the tokens must carry each patch's exact pattern and colour."""
    import timm.models

    from eve.models.loading import load_timm

    st = Stage(root, "dino", steps, init)
    if st.done:
        return
    rng = st.begin(seed + 3)
    vit = load_timm(str(st.init)) if st.init else nets.feature_vit()
    p = nets.VIT_ARGS["patch_size"]
    n = W.SIZE // p
    head = nn.Linear(nets.VIT_ARGS["embed_dim"], 3 * p * p)
    params = list(vit.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    for step in st.progress("critic features"):
        _, x = frames(rng, batch)
        masked = torch.rand(batch, 1, n, n) < mask_ratio
        keep = (~masked).float().repeat_interleave(p, 2).repeat_interleave(p, 3)
        inp = ((x + 1) / 2 - MEAN) / STD * keep
        tokens = vit.forward_features(inp)[:, vit.num_prefix_tokens:]  # [B, n*n, D]
        rec = head(tokens).view(batch, n, n, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape_as(x)
        err = (rec - x).pow(2).mean(1)  # [B, S, S]
        w = 1 + 3 * (1 - keep[:, 0])  # masked patches weigh more
        loss = (err * w).mean()
        optimise(opt, loss, params, None, vit, step, 1e-3, warmup=100)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    timm.models.save_for_hf(vit, str(st.tmp), model_args=nets.VIT_ARGS, safe_serialization=True)
    st.finish()


def store_half(root: Path) -> None:
    """Store every trained tensor in float16 (half the size in git). The loaders upcast them to the configured
    dtype (float32 by default): diffusers, transformers and timm all cast while loading."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for f in root.rglob("*.safetensors"):
        with safe_open(str(f), framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        if all(v.dtype != torch.float32 for v in tensors.values()):
            continue
        half = {k: v.half() if v.dtype == torch.float32 else v for k, v in tensors.items()}
        tmp = f.with_name(f".{f.name}.tmp")
        save_file(half, str(tmp), metadata=meta)
        os.replace(tmp, f)


EVE_YAML = """\
# The shapes world's teachers, trained from scratch by `python -m eve.worlds.shapes train-teachers`.
model:
  pretrained: ./sd
  controlnet: ./controlnet
  motion_adapter: ./motion_adapter
  sparsectrl: ./sparsectrl
  first_frame: sparsectrl
  dino: ./dino
  codec: vae
  num_frames: 8
  resolution: 32
  lora_rank: 8
edit:
  steps: 25
  teacher_steps: 10
  teacher_guidance: 2.0
  teacher_image_guidance: 1.5
  timestep_spacing: trailing
  # instruction-only editing: the world reads its frames and writes its captions itself
  captioner: eve.worlds.shapes.captioner:Captioner
  writer: eve.worlds.shapes.captioner:Writer
fdd:
  edit_guidance: 2.0
  edit_image_guidance: 1.5
  video_guidance: 2.0
"""


def _take_inputs(root: Path, init: Path, only: str) -> None:
    """A stage run alone from an earlier set continues on the parts of that set it needs and `root` lacks (their
    logs come along): the backbone on the autoencoder, an adapter on the whole backbone. Parts `root` has stay."""
    if only not in ("backbone", "controlnet", "video"):
        return  # the autoencoder and the feature net read no other stage
    parts = ["vae"] if only == "backbone" else [d.name for d in (init / "sd").iterdir()]
    (root / "logs").mkdir(exist_ok=True)
    for part in parts:
        src, dst = init / "sd" / part, root / "sd" / part
        if dst.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
        log = init / "logs" / f"sd_{part}.jsonl"
        if log.is_file():
            shutil.copy2(log, root / "logs" / log.name)


# Step counts of a run from scratch: the committed teachers are exactly this run (logs/*.jsonl beside the weights hold
# every step of every stage).
STEPS = {"autoencoder": 1200, "backbone": 5000, "controlnet": 2000, "video": 1000, "features": 800}


def train_teachers(root: str | os.PathLike, *, scale: float = 1.0, seed: int = 0, only: str | None = None,
                   init: str | os.PathLike | None = None, steps: int | None = None,
                   prediction: str | None = None) -> Path:
    """Every stage into `root` (each skipped when already there). `scale` multiplies every step count; `only`
    runs one stage (its inputs must exist in `root`, or in `init`, whence they are copied), so independent stages
    can run in parallel processes; `init` (an earlier teachers folder) continues each stage from its weights there;
    `steps` (with `only`) sets that stage's step count; `prediction` (one of PREDICTIONS; None: v_prediction) is the
    backbone's parametrisation, which the adapters follow: a backbone already in `root` must have it."""
    root = Path(root)
    if steps is not None and only is None:
        raise ValueError("steps= sets one stage's step count: give only= as well")
    if init is not None and not (Path(init) / "sd").is_dir():
        raise ValueError(f"init={init} is not a teachers folder (no sd/ in it)")
    if prediction not in (None, *PREDICTIONS):
        raise ValueError(f"prediction={prediction!r} must be one of {PREDICTIONS}")
    if only not in (None, *STEPS):
        raise ValueError(f"only={only!r} must be one of {tuple(STEPS)}")
    init = Path(init) if init is not None else None
    root.mkdir(parents=True, exist_ok=True)
    if init is not None and only is not None:
        _take_inputs(root, init, only)
    if prediction is not None and (root / "sd" / "unet").is_dir():
        had = backbone_schedule(root).prediction_type
        if had != prediction:
            raise EveError(f"--prediction {prediction}: the backbone in {root / 'sd'} was trained with {had}, and "
                           "its adapters follow it (another --out, or no --prediction)")
    prediction = prediction or "v_prediction"
    n = {k: steps if steps is not None else max(2, int(v * scale)) for k, v in STEPS.items()}
    stages = {
        "autoencoder": lambda: train_autoencoder(root, n["autoencoder"], 24, seed, init),
        "backbone": lambda: train_backbone(root, n["backbone"], 48, seed, init, prediction),
        "controlnet": lambda: train_controlnet(root, n["controlnet"], 32, seed, init),
        "video": lambda: train_video_adapter(root, n["video"], 6, seed, init),
        "features": lambda: train_features(root, n["features"], 64, seed, init=init),
    }
    for name, run in stages.items():
        if only in (None, name):
            run()
    if only is None:
        store_half(root)
        (root / "eve.yaml").write_text(EVE_YAML)
    if (root / "sd" / "unet").is_dir() and not (root / "sd" / "model_index.json").is_file():
        write_sd_index(root / "sd")  # a run killed between the backbone and its index
    return root / "eve.yaml"
