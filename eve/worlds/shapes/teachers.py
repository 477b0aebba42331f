"""Train the shapes world's frozen parts from scratch, each with only the data its role may see (issue: "the
world's stand-ins"), and save them in the same diffusers / transformers / timm layouts as real weights:

1. backbone: a word-level CLIP tokenizer over the world's vocabulary, a CLIPTextModel and a pixel-space
   UNet2DConditionModel trained together on (frame, caption) pairs, v-prediction with zero-terminal SNR;
2. edit adapter: a ControlNetModel initialised from copies of the backbone's down and middle blocks (paper §3.1),
   with task embeddings (Emu Edit's task label), trained on image-edit pairs on the frozen backbone;
3. video adapter: a MotionAdapter (output projections zero-initialised: identity at the start), trained on
   unlabeled captioned videos on the frozen backbone;
4. feature network for the discriminators: a small ViT in timm's DINOv2 architecture. No DINOv2 weights exist for
   this world, so it is trained to read the world's attributes (style, background, colours present, stripes);
   it is then frozen like DINO.

Each stage uses EMA weights, writes its folder atomically, and is skipped when its folder already exists, so an
interrupted `train-teachers` resumes at the stage it was in.
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
from eve.tasks import TASKS
from eve.worlds.shapes import world as W

logger = logging.getLogger(__name__)

TEXT_DIM = 64
MAX_TOKENS = 24
BLOCKS = (48, 96, 96)
DOWN = ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
UP = ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")
NUM_FRAMES = 8


def schedule() -> NoiseSchedule:
    return NoiseSchedule.from_config(prediction_type="v_prediction", zero_terminal_snr=True)


def word_tokenizer(words: list[str]):
    """A CLIPTokenizer whose BPE merges spell every world word as one token (bytes otherwise)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab[s] = len(vocab)
    merges = []
    for w in words:
        parts = list(w[:-1]) + [w[-1] + "</w>"]
        cur = parts[0]
        for nxt in parts[1:]:
            merges.append((cur, nxt))
            cur = cur + nxt
            vocab.setdefault(cur, len(vocab))
    merges = list(dict.fromkeys(merges))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=TEXT_DIM, bos_token_id=0,
        eos_token_id=1, pad_token_id=1))


def unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=W.SIZE, in_channels=3, out_channels=3, block_out_channels=BLOCKS, layers_per_block=1,
        norm_num_groups=16, cross_attention_dim=TEXT_DIM, attention_head_dim=4, down_block_types=DOWN,
        up_block_types=UP)


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


def encode(tokenizer, encoder, texts: list[str]) -> torch.Tensor:
    ids = tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    return encoder(ids).last_hidden_state


def _drop(texts: list[str], p: float, rng: random.Random) -> list[str]:
    return ["" if rng.random() < p else t for t in texts]


def _v_loss(pred: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, s: NoiseSchedule) -> torch.Tensor:
    return F.mse_loss(pred, s.output_from(x0, eps, t))


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list, ema: "EMA", module: nn.Module,
             step: int, peak_lr: float, warmup: int = 200) -> None:
    """Linear warm-up to peak_lr, backward, clip at 1, step, EMA update."""
    for g in opt.param_groups:
        g["lr"] = peak_lr * min(1.0, (step + 1) / warmup)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    ema.update(module)


class Stage:
    """Folder, progress bar, metrics.jsonl and atomic save of one training stage."""

    def __init__(self, root: Path, name: str, steps: int):
        self.final = root / name
        self.tmp = root / f".{name}.tmp"
        self.log = root / "logs" / f"{name}.jsonl"
        self.steps = steps
        self.t0 = time.perf_counter()

    @property
    def done(self) -> bool:
        return self.final.exists()

    def begin(self, seed: int) -> random.Random:
        """Fresh temporary folder and log; seeds torch; returns the stage's data generator."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        torch.manual_seed(seed)
        return random.Random(seed)

    def record(self, step: int, **values) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps({"step": step, "seconds": round(time.perf_counter() - self.t0, 1), **values}) + "\n")

    def finish(self) -> None:
        os.replace(self.tmp, self.final)


def train_backbone(root: Path, steps: int, batch: int, seed: int) -> None:
    from diffusers import DDIMScheduler

    st = Stage(root, "sd", steps)
    if st.done:
        return
    rng = st.begin(seed)
    tok = word_tokenizer(W.VOCABULARY)
    te, net = text_encoder(len(tok)), unet()
    params = list(te.parameters()) + list(net.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    s = schedule()
    both = nn.ModuleList([net, te])
    ema = EMA(both)
    for step in tqdm(range(steps), desc="backbone", mininterval=5):
        scenes = [W.backbone_scene(rng) for _ in range(batch)]
        x0 = torch.stack([W.render(sc, rng.randrange(16)) for sc in scenes])
        h = encode(tok, te, _drop([W.caption(sc) for sc in scenes], 0.1, rng))
        t = torch.randint(0, 1000, (batch,))
        eps = torch.randn_like(x0)
        loss = _v_loss(net(s.add_noise(x0, eps, t), t, h).sample, x0, eps, t, s)
        optimise(opt, loss, params, ema, both, step, 1e-3)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    ema.copy_to(both)
    net.save_pretrained(st.tmp / "unet")
    te.save_pretrained(st.tmp / "text_encoder")
    tok.save_pretrained(st.tmp / "tokenizer")
    DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                  prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
                  clip_sample=False, set_alpha_to_one=False).save_pretrained(st.tmp / "scheduler")
    st.finish()


def load_backbone(root: Path):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sd = root / "sd"
    net = UNet2DConditionModel.from_pretrained(sd, subfolder="unet").requires_grad_(False).eval()
    te = CLIPTextModel.from_pretrained(sd, subfolder="text_encoder").requires_grad_(False).eval()
    return CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"), te, net


def train_controlnet(root: Path, steps: int, batch: int, seed: int) -> None:
    from diffusers import ControlNetModel

    st = Stage(root, "controlnet", steps)
    if st.done:
        return
    rng = st.begin(seed + 1)
    tok, te, net = load_backbone(root)
    cn = ControlNetModel(
        in_channels=3, block_out_channels=BLOCKS, layers_per_block=1, norm_num_groups=16, cross_attention_dim=TEXT_DIM,
        attention_head_dim=4, down_block_types=DOWN, conditioning_embedding_out_channels=(16,),
        num_class_embeds=len(TASKS))
    missing, _ = cn.load_state_dict(net.state_dict(), strict=False)  # copies of the backbone's down + middle blocks
    logger.info("controlnet initialised from the backbone; %d tensors new (zero convs, hint encoder, task table)", len(missing))
    opt = torch.optim.AdamW(cn.parameters(), lr=5e-4)
    ema = EMA(cn)
    s = schedule()
    for step in tqdm(range(steps), desc="controlnet", mininterval=5):
        src_scenes = [W.source_scene(rng) for _ in range(batch)]
        tasks = [rng.randrange(len(TASKS)) for _ in range(batch)]
        pairs = [W.edit(sc, TASKS[k], rng) for sc, k in zip(src_scenes, tasks)]
        frames = [rng.randrange(NUM_FRAMES) for _ in range(batch)]
        src = torch.stack([W.render(sc, f) for sc, f in zip(src_scenes, frames)])
        x0 = torch.stack([W.render(tgt, f) for (_, tgt), f in zip(pairs, frames)])
        with torch.no_grad():
            cap = encode(tok, te, _drop([W.caption(tgt) for _, tgt in pairs], 0.1, rng))
            ins = encode(tok, te, _drop([i for i, _ in pairs], 0.1, rng))
        keep = torch.tensor([rng.random() >= 0.05 for _ in range(batch)], dtype=torch.float32)  # image dropout
        t = torch.randint(0, 1000, (batch,))
        eps = torch.randn_like(x0)
        xt = s.add_noise(x0, eps, t)
        down, mid = cn(xt, t, encoder_hidden_states=ins, controlnet_cond=(src + 1) / 2, class_labels=torch.tensor(tasks),
                       return_dict=False)
        k4 = keep.view(-1, 1, 1, 1)
        pred = net(xt, t, cap, down_block_additional_residuals=[d * k4 for d in down],
                   mid_block_additional_residual=mid * k4).sample
        loss = _v_loss(pred, x0, eps, t, s)
        optimise(opt, loss, list(cn.parameters()), ema, cn, step, 5e-4)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    ema.copy_to(cn)
    cn.save_pretrained(st.tmp)
    st.finish()


def train_motion(root: Path, steps: int, clips: int, seed: int) -> None:
    from diffusers import MotionAdapter, UNetMotionModel

    st = Stage(root, "motion_adapter", steps)
    if st.done:
        return
    rng = st.begin(seed + 2)
    tok, te, net = load_backbone(root)
    adapter = MotionAdapter(block_out_channels=BLOCKS, motion_layers_per_block=1, motion_norm_num_groups=16,
                            motion_num_attention_heads=4, motion_max_seq_length=32, use_motion_mid_block=True)
    for name, p in adapter.named_parameters():
        if "proj_out" in name:
            torch.nn.init.zeros_(p)  # identity at the start (AnimateDiff's zero-initialised output projection)
    video_unet = UNetMotionModel.from_unet2d(net, adapter)
    video_unet.requires_grad_(False)
    params = [p for n, p in video_unet.named_parameters() if "motion_modules" in n]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=5e-4)
    ema = EMA(video_unet)
    s = schedule()
    for step in tqdm(range(steps), desc="motion", mininterval=5):
        scenes = [W.backbone_scene(rng) for _ in range(clips)]
        x0 = torch.stack([W.render_video(sc, NUM_FRAMES) for sc in scenes])  # [B, F, 3, H, W]
        with torch.no_grad():
            cap = encode(tok, te, _drop([W.caption(sc) for sc in scenes], 0.1, rng)).repeat_interleave(NUM_FRAMES, 0)
        t = torch.randint(0, 1000, (clips,))
        eps = torch.randn_like(x0)
        xt = s.add_noise(x0, eps, t)
        pred = video_unet(xt.permute(0, 2, 1, 3, 4), t, cap).sample.permute(0, 2, 1, 3, 4)
        loss = _v_loss(pred, x0, eps, t, s)
        optimise(opt, loss, params, ema, video_unet, step, 5e-4)
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    ema.copy_to(video_unet)
    video_unet.save_motion_modules(str(st.tmp))
    st.finish()


def attribute_targets(scene: W.Scene) -> torch.Tensor:
    """Multi-label target: style (3), background (3), colour present (4), colour striped (4)."""
    y = torch.zeros(14)
    y[W.STYLES.index(scene.style)] = 1
    y[3 + list(W.BACKGROUNDS).index(scene.background)] = 1
    for o in scene.objects:
        y[6 + list(W.COLOURS).index(o.colour)] = 1
        if o.striped:
            y[10 + list(W.COLOURS).index(o.colour)] = 1
    return y


def train_features(root: Path, steps: int, batch: int, seed: int) -> None:
    import timm
    import timm.models

    st = Stage(root, "dino", steps)
    if st.done:
        return
    rng = st.begin(seed + 3)
    args = dict(img_size=W.SIZE, patch_size=4, embed_dim=64, depth=4, num_heads=4, num_classes=0)
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, **args)
    head = nn.Linear(64, 14)
    params = list(vit.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for step in tqdm(range(steps), desc="features", mininterval=5):
        scenes = [W.backbone_scene(rng) for _ in range(batch)]
        x = torch.stack([W.render(sc, rng.randrange(16)) for sc in scenes])
        x = x + 0.1 * torch.randn_like(x)  # generated frames are noisy; so are these
        logits = head(vit(((x + 1) / 2 - mean) / std))
        loss = F.binary_cross_entropy_with_logits(logits, torch.stack([attribute_targets(sc) for sc in scenes]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step + 1 == steps:
            st.record(step, loss=float(loss.detach()))
    timm.models.save_for_hf(vit, str(st.tmp), model_args=args, safe_serialization=True)
    st.finish()


EVE_YAML = """\
# The shapes world's teachers, trained from scratch by `python -m eve.worlds.shapes train-teachers`.
model:
  pretrained: ./sd
  controlnet: ./controlnet
  motion_adapter: ./motion_adapter
  dino: ./dino
  codec: identity
  num_frames: 8
  resolution: 16
  lora_rank: 8
edit:
  steps: 10
  teacher_steps: 10
  teacher_guidance: 2.0
  teacher_image_guidance: 1.5
  timestep_spacing: trailing
fdd:
  edit_guidance: 2.0
  edit_image_guidance: 1.5
  video_guidance: 2.0
"""


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


def train_teachers(root: str | os.PathLike, *, scale: float = 1.0, seed: int = 0) -> Path:
    """All four stages into `root` (each skipped when already there). `scale` multiplies every step count."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n = lambda k: max(2, int(k * scale))  # noqa: E731
    train_backbone(root, n(4000), 48, seed)
    train_controlnet(root, n(2000), 32, seed)
    train_motion(root, n(1500), 6, seed)
    train_features(root, n(600), 64, seed)
    store_half(root)
    (root / "eve.yaml").write_text(EVE_YAML)
    return root / "eve.yaml"
