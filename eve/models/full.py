"""The open stack at full architecture size with random weights, in the real on-disk layouts (issue 12): time and
memory do not depend on weight values, so benchmarks of what a user's GPU pays need no download.

    python -m eve.models.full OUT_DIR [--only unet,vae,...] [--dtype float16]

OUT_DIR/sd/{unet,vae,text_encoder,tokenizer,scheduler}/ (with diffusers' model_index.json), controlnet/,
motion_adapter/, dino/ and eve.yaml, loaded by the same `from_pretrained` calls as the real weights. Each part is
built from its published architecture config:

| part | architecture | published parameters |
|---|---|---|
| unet | SD-1.5 UNet2DConditionModel (320-640-1280-1280, cross-attention 768, 8 heads) | 859,520,964 |
| vae | SD-1.5 AutoencoderKL (128-256-512-512, 4 latent channels) | 83,653,863 |
| text_encoder | CLIP ViT-L/14 text tower (12 layers, width 768) | 123,060,480 |
| controlnet | ip2p ControlNet (control_v11e_sd15_ip2p: the UNet's encoder + zero convolutions) | 361.3 M |
| motion_adapter | AnimateDiff v1-5-2 (2 motion layers per block, mid block, 32 positions) | 453.2 M |
| dino | DINOv2 ViT-S/14 at 518 px (timm vit_small_patch14_dinov2) | 22.1 M |

The tokenizer is the tiny set's byte-level CLIP BPE (the real vocabulary cannot be downloaded): it gives valid ids
for the 49,408-token embedding, so costs are the real ones. The zero convolutions get random weights as in the tiny
set, so the adapter is not a no-op.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

from eve.errors import EveError

# published parameter counts (exact where the figure is printed to the parameter, else to 0.1 M)
PUBLISHED = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480, "controlnet": 361.3e6,
             "motion_adapter": 453.2e6, "dino": 22.1e6}
PARTS = tuple(PUBLISHED)

EVE_YAML = """\
# SD-1.5-size random-weight model set written by `python -m eve.models.full` (time and memory, not quality).
model:
  pretrained: ./sd
  controlnet: ./controlnet
  motion_adapter: ./motion_adapter
  dino: ./dino
  codec: vae
  num_frames: 8
  resolution: 512
  dtype: {dtype}
  first_frame: replace
  lora_rank: 64
edit:
  steps: 3
  teacher_steps: 50
  teacher_guidance: 7.5
  teacher_image_guidance: 1.5
  timestep_spacing: leading
"""


def unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)


def vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                         layers_per_block=2, latent_channels=4, sample_size=512)


def text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                       num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                       hidden_act="quick_gelu", projection_dim=768, bos_token_id=0, eos_token_id=1,
                                       pad_token_id=1))


def controlnet():
    from diffusers import ControlNetModel

    from eve.models.tiny import _randomise_zero_convs

    cn = ControlNetModel(cross_attention_dim=768, attention_head_dim=8)
    if not next(cn.parameters()).is_meta:
        _randomise_zero_convs(cn)
    return cn


def motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(block_out_channels=(320, 640, 1280, 1280), motion_layers_per_block=2,
                         motion_mid_block_layers_per_block=1, motion_num_attention_heads=8, motion_norm_num_groups=32,
                         motion_max_seq_length=32, use_motion_mid_block=True)


DINO_ARGS = dict(img_size=518)


def dino():
    import timm

    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, **DINO_ARGS)


BUILDERS = {"unet": unet, "vae": vae, "text_encoder": text_encoder, "controlnet": controlnet,
            "motion_adapter": motion_adapter, "dino": dino}


def parameter_count(part: str) -> int:
    """Parameters of a part, counted on the meta device (no memory, no time)."""
    with torch.device("meta"):
        return sum(p.numel() for p in BUILDERS[part]().parameters())


def scheduler():
    """SD-1.5's own: epsilon prediction, scaled-linear betas, no zero-terminal SNR."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         timestep_spacing="leading")


def check_request(only: tuple[str, ...], dtype: str) -> None:
    from eve.models.loading import DTYPES

    unknown = [p for p in only if p not in PARTS]
    if unknown:
        raise EveError(f"unknown part(s) {', '.join(unknown)} (parts: {', '.join(PARTS)})")
    if dtype not in DTYPES:
        raise EveError(f"unknown dtype {dtype} (dtypes: {', '.join(DTYPES)})")


def write_full(out_dir: str | os.PathLike, *, only: tuple[str, ...] = PARTS, dtype: str = "float16",
               seed: int = 0) -> Path:
    """Write the parts in `only` (all by default; eve.yaml only with all) to `out_dir`, weights in `dtype`."""
    import timm.models

    from eve.utils.logging import diffusers_log_level, quiet_libraries
    from eve.models.loading import DTYPES
    from eve.models.tiny import byte_tokenizer, write_sd_index

    check_request(only, dtype)
    quiet_libraries()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    where = {"unet": "sd/unet", "vae": "sd/vae", "text_encoder": "sd/text_encoder", "controlnet": "controlnet",
             "motion_adapter": "motion_adapter", "dino": "dino"}
    with tempfile.TemporaryDirectory(dir=out, prefix=".full-") as tmp:
        t = Path(tmp)
        for part in only:
            with diffusers_log_level(logging.ERROR):  # diffusers warns of fp32-only modules; these have none
                model = BUILDERS[part]().to(DTYPES[dtype])
            if part == "dino":
                timm.models.save_for_hf(model, str(t / where[part]), model_args=DINO_ARGS, safe_serialization=True)
            else:
                model.save_pretrained(t / where[part])
            del model
        if "text_encoder" in only:
            tok = byte_tokenizer()
            tok.model_max_length = 77
            tok.save_pretrained(t / "sd" / "tokenizer")
        if (t / "sd").is_dir():
            scheduler().save_pretrained(t / "sd" / "scheduler")
        if set(only) == set(PARTS):
            write_sd_index(t / "sd")
            (t / "eve.yaml").write_text(EVE_YAML.format(dtype=dtype))
        for item in t.iterdir():  # into place only once written
            dest = out / item.name
            if item.name == "sd" and dest.is_dir():  # merge a partial backbone into an existing one
                for sub in item.iterdir():
                    if (dest / sub.name).exists():
                        shutil.rmtree(dest / sub.name) if (dest / sub.name).is_dir() else (dest / sub.name).unlink()
                    os.replace(sub, dest / sub.name)
                continue
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    return out


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import HelpFormatter, run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="python -m eve.models.full", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("out_dir", help="folder to write (with every part: an eve.yaml naming them)")
    ap.add_argument("--only", help=f"comma-separated parts (default: all of {', '.join(PARTS)})")
    ap.add_argument("--dtype", default="float16", help="weight dtype on disk: float16, bfloat16 or float32")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        only = tuple(p.strip() for p in args.only.split(",")) if args.only else PARTS
        check_request(only, args.dtype)
        for part in only:
            print(f"{part}: {parameter_count(part):,} parameters (published: {PUBLISHED[part]:,.0f})")
        print(write_full(args.out_dir, only=only, dtype=args.dtype, seed=args.seed))

    return run_cli("eve.models.full", body)


if __name__ == "__main__":
    sys.exit(main())
