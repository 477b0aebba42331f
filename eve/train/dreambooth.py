"""`python -m eve.train.dreambooth`: a style or subject LoRA on the backbone from a few images (DreamBooth-style, the
backbone frozen): what LoRA alignment (paper §4.4, `fdd.mode=lora_align`) then aligns with the edit adapter.

The UNet of `model.pretrained` gets a LoRA (model.lora_rank, model.lora_targets) trained with the backbone's own
denoising loss (its prediction type, timesteps uniform over [0, T)) on the images' latents, each image with its
caption: one `--prompt` for all ("a sks toy", "a line-art drawing of ..."), or a `metadata.jsonl`/`metadata.csv`
beside the images (columns file_name, text: the layout of diffusers' training scripts). No prior preservation and
no text-encoder training: the LoRA adapts the UNet only, which is what eve aligns.

Writes OUT/pytorch_lora_weights.safetensors (diffusers' format, by diffusers' own `save_lora_weights`),
OUT/metrics.jsonl and OUT/samples.png (rows: training images | the backbone with the LoRA | without it, same noise).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

from eve.errors import EveError
from eve.utils.files import check_writable

logger = logging.getLogger("eve.dreambooth")


def read_images(folder: str | Path, prompt: str | None, size: int) -> tuple[torch.Tensor, list[str]]:
    """(images [N, 3, size, size] in [-1, 1], captions): the folder's images, centre-cropped to `size`."""
    from eve.data.clips import center_crop
    from eve.data.video import IMAGE_SUFFIXES, read_video

    p = Path(folder)
    if not p.is_dir():
        raise EveError(f"--images {p} is not a folder")
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EveError(f"--images {p} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if prompt is None:
        captions = _metadata(p)
        missing = [f.name for f in files if f.name not in captions]
        if missing:
            raise EveError(f"{p}: no caption for {missing[0]} ({len(missing)} images) in its metadata: give "
                           "--prompt, or a text for every file_name")
        texts = [captions[f.name] for f in files]
    else:
        texts = [prompt] * len(files)
    images = torch.cat([center_crop(read_video(f).frames[:1], size) for f in files])
    return images, texts


def _metadata(folder: Path) -> dict[str, str]:
    for name in ("metadata.jsonl", "metadata.csv"):
        f = folder / name
        if f.is_file():
            df = pd.read_json(f, lines=True) if f.suffix == ".jsonl" else pd.read_csv(f, keep_default_na=False)
            if not {"file_name", "text"} <= set(df.columns):
                raise EveError(f"{f} needs columns file_name and text (has: {', '.join(map(str, df.columns))})")
            return dict(zip(df["file_name"].astype(str), df["text"].astype(str)))
    raise EveError(f"give --prompt, or captions in {folder}/metadata.jsonl or metadata.csv (file_name, text)")


def train_lora(cfg, images: torch.Tensor, captions: list[str], out: str | Path, *, steps: int, lr: float,
               batch: int, seed: int, sample_prompt: str | None = None) -> Path:
    """Train the LoRA and write it; returns the LoRA file."""
    from diffusers import UNet2DConditionModel
    from tqdm.auto import tqdm

    from eve.models.build import build_schedule, frozen, load_codec, load_text
    from eve.models.loading import check_weight_refs, from_pretrained
    from eve.models.lora import ADAPTER, add_lora, lora_parameters, lora_state_dict, write_diffusers_lora

    m = cfg.model
    check_weight_refs(m)
    out = Path(out)
    check_writable(out, "--out")
    # The UNet trains in fp32 whatever model.dtype says (the LoRA's AdamW state and loss want it); the frozen
    # text encoder and codec run once, in model.dtype, and their outputs are cast.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    schedule = build_schedule(m)
    unet = frozen(from_pretrained(UNet2DConditionModel, m.pretrained, "pretrained", "unet")).to(device)
    text = load_text(m).to(device)
    codec = load_codec(m, unet.config.in_channels).to(device)
    add_lora(unet, m.lora_rank, m.lora_alpha, m.lora_targets)
    params = lora_parameters(unet)
    opt = torch.optim.AdamW(params, lr=lr)
    with torch.no_grad():
        x0 = codec.encode(images[:, None].to(device))[:, 0].float()  # the frozen codec: encoded once
        cond = text(captions).float()
    gen = torch.Generator().manual_seed(seed)
    T = schedule.num_train_timesteps
    out.mkdir(parents=True, exist_ok=True)
    metrics = out / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    unet.train()
    bar = tqdm(range(steps), desc="lora")
    for step in bar:
        idx = torch.randint(len(x0), (batch,), generator=gen).to(device)
        t = torch.randint(0, T, (batch,), generator=gen).to(device)
        eps = torch.randn(x0[idx].shape, generator=gen).to(device)
        xt = schedule.add_noise(x0[idx], eps, t)
        pred = unet(xt, t, encoder_hidden_states=cond[idx]).sample
        loss = torch.nn.functional.mse_loss(pred.float(), schedule.output_from(x0[idx], eps, t))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with open(metrics, "a") as fh:
            fh.write(json.dumps({"step": step + 1, "loss": float(loss.detach())}) + "\n")
        bar.set_postfix(loss=f"{float(loss):.4f}")
    unet.eval()
    path = write_diffusers_lora(lora_state_dict(unet), unet.peft_config[ADAPTER].to_dict(), out)
    _sample_grid(out / "samples.png", unet, text, codec, schedule, images,
                 sample_prompt or captions[0], seed=seed, count=min(len(images), 6))
    logger.info("wrote %s (%d steps, final loss %.4f)", path, steps, float(loss))
    return path


@torch.no_grad()
def _sample_grid(path: Path, unet, text, codec, schedule, images: torch.Tensor, prompt: str, *, seed: int,
                 count: int) -> None:
    """Rows: training images | the backbone with the LoRA | without it (the same noise, 25 DDIM steps, CFG 5)."""
    from eve.diffusion.guidance import cfg as guided
    from eve.diffusion.sampling import sample
    from eve.diffusion.timesteps import ddim_timesteps
    from eve.train.samples import grid_image

    c, null = text([prompt] * count).float(), text([""] * count).float()
    side = images.shape[-1] // codec.scale_factor
    noise = torch.randn((count, unet.config.in_channels, side, side), generator=torch.Generator().manual_seed(seed))
    noise = noise.to(c.device)
    ts = ddim_timesteps(25, schedule.num_train_timesteps, "trailing")

    def denoiser(x, t):
        both = unet(torch.cat([x, x]), torch.cat([t, t]), encoder_hidden_states=torch.cat([null, c])).sample.float()
        return schedule.x0_from_output(x, guided(both[:count], both[count:], 5.0), t)

    rows = [images[:count]]
    for on in (True, False):
        unet.enable_adapters() if on else unet.disable_adapters()
        rows.append(codec.decode(sample(denoiser, noise, ts, schedule)[:, None])[:, 0].float().clamp(-1, 1).cpu())
    unet.enable_adapters()
    img = grid_image(rows, scale=max(1, 96 // images.shape[-1]), labels=["images", "with LoRA", "without"])
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    from eve.config import load_config
    from eve.config import DEFAULT_CONFIG
    from eve.utils.cli import HelpFormatter, run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="python -m eve.train.dreambooth", formatter_class=HelpFormatter,
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="eve YAML whose model section names the backbone (default: the committed "
                                     "shapes-world teachers)")
    ap.add_argument("--images", required=True, help="folder of png/jpg images of the style or subject")
    ap.add_argument("--prompt", help='caption of every image, e.g. "a sks toy" (default: metadata.jsonl/csv)')
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate")
    ap.add_argument("--batch", type=int, default=4, help="images per step")
    ap.add_argument("--seed", type=int, default=0, help="noise and sampling seed")
    ap.add_argument("--sample-prompt", help="prompt of samples.png (default: the first caption)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. model.lora_rank=8")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        if args.steps < 1 or args.batch < 1 or args.lr <= 0:
            raise EveError(f"--steps and --batch must be >= 1 and --lr > 0, got {args.steps}, {args.batch}, {args.lr}")
        cfg = load_config(args.config or DEFAULT_CONFIG, args.overrides)
        images, captions = read_images(args.images, args.prompt, cfg.data.size or cfg.model.resolution)
        train_lora(cfg, images, captions, args.out, steps=args.steps, lr=args.lr, batch=args.batch, seed=args.seed,
                   sample_prompt=args.sample_prompt)

    return run_cli("dreambooth", body)


if __name__ == "__main__":
    sys.exit(main())
