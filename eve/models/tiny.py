"""Write a complete tiny, randomly initialised model set in the real on-disk layouts, plus an `eve.yaml` naming it.

    python -m eve.models.tiny OUT_DIR [--vae] [--seed N] [--no-data]

OUT_DIR/sd/{unet,text_encoder,tokenizer,scheduler[,vae]}/ with diffusers' model_index.json, controlnet/, motion_adapter/, sparsectrl/ (diffusers and
transformers `save_pretrained` layouts), dino/ (timm's config.json + model.safetensors), eve.yaml. Everything loads
back through the same `from_pretrained` calls as real weights, with no network. OUT_DIR/data/ holds a toy FDD
dataset (generated clips + manifest.csv) for smoke runs of train_fdd.py. The tokenizer is a byte-level CLIP
BPE built in memory (no vocabulary download). Pixel space (identity codec) unless --vae adds a tiny AutoencoderKL.

ControlNet-style zero convolutions are given random weights here: a zero-initialised adapter would leave every
switch without effect, and the parity tests would then pass for the wrong reason.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from eve.tasks import TASKS

CROSS_DIM = 32
BLOCKS = (32, 64)
GROUPS = 16
HEADS = 2
MAX_TOKENS = 32


def byte_tokenizer():
    """CLIPTokenizer over the 256 byte symbols (and their word-final forms), no merges: 514 tokens."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for s in symbols + [s + "</w>" for s in symbols]:
        vocab[s] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TOKENS)


def text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=CROSS_DIM,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=MAX_TOKENS,
            projection_dim=CROSS_DIM,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )


def unet(channels: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=BLOCKS,
        layers_per_block=1,
        norm_num_groups=GROUPS,
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=HEADS,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )


def motion_adapter():
    from diffusers import MotionAdapter

    return MotionAdapter(
        block_out_channels=BLOCKS,
        motion_layers_per_block=1,
        motion_norm_num_groups=GROUPS,
        motion_num_attention_heads=HEADS,
        motion_max_seq_length=32,
        use_motion_mid_block=True,
    )


def controlnet(channels: int, cond_scale: int, num_tasks: int):
    """Edit adapter with task embeddings (Emu Edit's task label, added to the timestep embedding)."""
    from diffusers import ControlNetModel

    cond_channels = tuple([16] + [32] * (cond_scale.bit_length() - 1))  # len - 1 = log2(cond_scale)
    cn = ControlNetModel(
        in_channels=channels,
        block_out_channels=BLOCKS,
        layers_per_block=1,
        norm_num_groups=GROUPS,
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=HEADS,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        conditioning_embedding_out_channels=cond_channels,
        num_class_embeds=num_tasks,
    )
    _randomise_zero_convs(cn)
    return cn


def sparsectrl(channels: int):
    from diffusers import SparseControlNetModel

    sc = SparseControlNetModel(
        in_channels=channels,
        conditioning_channels=channels,
        block_out_channels=BLOCKS,
        layers_per_block=1,
        norm_num_groups=GROUPS,
        cross_attention_dim=CROSS_DIM,
        attention_head_dim=HEADS,
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        motion_num_attention_heads=HEADS,
        motion_max_seq_length=32,
        conditioning_embedding_out_channels=(16, 32),
        use_simplified_condition_embedding=True,
    )
    _randomise_zero_convs(sc)
    return sc


def _randomise_zero_convs(model: nn.Module) -> None:
    convs = list(model.controlnet_down_blocks) + [model.controlnet_mid_block]
    if hasattr(model, "controlnet_cond_embedding"):
        convs += [m for m in model.controlnet_cond_embedding.modules() if isinstance(m, nn.Conv2d)][-1:]
    for m in convs:
        m.reset_parameters()


def vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )


def scheduler():
    """v-prediction with zero-terminal SNR and trailing steps: the setting the paper's adapters were trained in."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def dino(img_size: int = 32):
    """A DINOv2-architecture ViT (timm `vit_small_patch14_dinov2` with tiny widths) for the discriminators."""
    import timm

    args = dict(img_size=img_size, patch_size=4, embed_dim=32, depth=4, num_heads=2)
    return timm.create_model("vit_small_patch14_dinov2", pretrained=False, **args), args


EVE_YAML = """\
# Tiny random-weight model set written by `python -m eve.models.tiny`. Paths are relative to this file.
model:
  pretrained: ./sd
  controlnet: ./controlnet
  motion_adapter: ./motion_adapter
  sparsectrl: ./sparsectrl
  dino: ./dino
  codec: {codec}
  num_frames: 8
  resolution: 16
  lora_rank: 4
edit:
  steps: 4
  teacher_steps: 4
"""


def write_tiny(out_dir: str | os.PathLike, *, with_vae: bool = False, seed: int = 0) -> Path:
    """Write the tiny set to `out_dir` (created; same-named entries replaced) and return the eve.yaml path."""
    import timm.models

    from eve.utils.logging import quiet_libraries

    quiet_libraries()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    channels = 4 if with_vae else 3
    cond_scale = 2 if with_vae else 1  # ControlNet image size / sample size: the codec's downsampling
    with tempfile.TemporaryDirectory(dir=out, prefix=".tiny-") as tmp:
        t = Path(tmp)
        tok = byte_tokenizer()
        tok.save_pretrained(t / "sd" / "tokenizer")
        text_encoder(len(tok)).save_pretrained(t / "sd" / "text_encoder")
        unet(channels).save_pretrained(t / "sd" / "unet")
        scheduler().save_pretrained(t / "sd" / "scheduler")
        if with_vae:
            vae().save_pretrained(t / "sd" / "vae")
        motion_adapter().save_pretrained(t / "motion_adapter")
        controlnet(channels, cond_scale, len(TASKS)).save_pretrained(t / "controlnet")
        sparsectrl(channels).save_pretrained(t / "sparsectrl")
        net, args = dino()
        timm.models.save_for_hf(net, str(t / "dino"), model_args=args, safe_serialization=True)
        write_sd_index(t / "sd")
        (t / "eve.yaml").write_text(EVE_YAML.format(codec="vae" if with_vae else "identity"))
        for item in t.iterdir():  # move into place only once everything was written
            dest = out / item.name
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(item, dest)
    return out / "eve.yaml"


def write_sd_index(sd: str | os.PathLike) -> Path:
    """`sd/model_index.json` for a backbone folder (unet, text_encoder, tokenizer, scheduler[, vae]), written by
    diffusers itself (a StableDiffusionPipeline over the parts, `save_config`), so that stock
    `StableDiffusionPipeline.from_pretrained(sd)` loads it, and AnimateDiff / ControlNet pipelines with the adapter
    passed beside it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    sd = Path(sd)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(sd, subfolder="vae") if (sd / "vae").is_dir() else None,
        text_encoder=CLIPTextModel.from_pretrained(sd, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(sd, subfolder="unet"),
        scheduler=DDIMScheduler.from_pretrained(sd, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_config(sd)
    return sd / "model_index.json"


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m eve.models.tiny", description=__doc__, formatter_class=HelpFormatter)
    ap.add_argument("out_dir", help="folder to write (its eve.yaml names every part)")
    ap.add_argument("--vae", action="store_true", help="latent space with a tiny AutoencoderKL (default: pixels)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    ap.add_argument("--no-data", action="store_true", help="skip the toy FDD dataset (OUT_DIR/data/manifest.csv)")
    args = ap.parse_args(argv)
    path = write_tiny(args.out_dir, with_vae=args.vae, seed=args.seed)
    if not args.no_data:
        from eve.data.toy import write_toy_dataset

        write_toy_dataset(Path(args.out_dir) / "data")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
