"""Load the components a ModelConfig names and hand them to EveModel, frozen and in eval mode."""

from __future__ import annotations

import logging

from eve.diffusion.schedule import NoiseSchedule
from eve.errors import EveError
from eve.models.codec import IdentityCodec, VaeCodec
from eve.models.loading import DTYPES, check_weight_refs, from_pretrained, load_scheduler_config
from eve.models.text import TextEncoder
from eve.utils.logging import diffusers_log_level, quiet_libraries

logger = logging.getLogger(__name__)


def build_schedule(cfg) -> NoiseSchedule:
    """The backbone's schedule from its scheduler config, with the ModelConfig's overrides."""
    return schedule_from(load_scheduler_config(cfg.pretrained), cfg.prediction_type, cfg.zero_terminal_snr,
                         where=cfg.pretrained)


def schedule_from(sc: dict, prediction_type: str | None = None, zero_terminal_snr: bool | None = None, *,
                  where: str = "the scheduler") -> NoiseSchedule:
    """eve's NoiseSchedule from a diffusers scheduler config (dict), overrides (None: the config's) applied."""
    prediction = prediction_type or sc.get("prediction_type", "epsilon")
    ztsnr = zero_terminal_snr if zero_terminal_snr is not None else bool(sc.get("rescale_betas_zero_snr"))
    try:
        return NoiseSchedule.from_config(
            num_train_timesteps=sc.get("num_train_timesteps", 1000),
            beta_start=sc.get("beta_start", 0.00085),
            beta_end=sc.get("beta_end", 0.012),
            beta_schedule=sc.get("beta_schedule", "scaled_linear"),
            prediction_type=prediction,
            zero_terminal_snr=ztsnr,
        )
    except ValueError as e:
        raise EveError(f"noise schedule of {where}: {e}") from None


def frozen(module):
    module.requires_grad_(False)
    return module.eval()


def load_text(cfg) -> TextEncoder:
    """The backbone's tokenizer and text encoder (model.pretrained), frozen."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = from_pretrained(CLIPTokenizer, cfg.pretrained, "pretrained", "tokenizer")
    encoder = from_pretrained(CLIPTextModel, cfg.pretrained, "pretrained", "text_encoder", torch_dtype=DTYPES[cfg.dtype])
    return TextEncoder(tokenizer, frozen(encoder))


def load_codec(cfg, channels: int):
    """The backbone's pixel codec: its VAE (model.codec=vae) or none; it must give the UNet's `channels`."""
    from diffusers import AutoencoderKL

    if cfg.codec == "vae":
        vae = from_pretrained(AutoencoderKL, cfg.pretrained, "pretrained", "vae", torch_dtype=DTYPES[cfg.dtype])
        codec = VaeCodec(frozen(vae))
    else:
        codec = IdentityCodec(channels)
    if codec.channels != channels:
        raise EveError(f"model.codec={cfg.codec} gives {codec.channels} channels but the UNet takes {channels}")
    return frozen(codec)


def load_parts(cfg) -> dict:
    """Keyword arguments for EveModel: every weight loaded through its class's own `from_pretrained`."""
    from diffusers import ControlNetModel, MotionAdapter, SparseControlNetModel, UNet2DConditionModel, UNetMotionModel

    quiet_libraries()
    check_weight_refs(cfg)  # every reference first: a bad one fails before anything loads
    dtype = DTYPES[cfg.dtype]
    schedule = build_schedule(cfg)
    unet2d = from_pretrained(UNet2DConditionModel, cfg.pretrained, "pretrained", "unet", torch_dtype=dtype)
    adapter = from_pretrained(MotionAdapter, cfg.motion_adapter, "motion_adapter", torch_dtype=dtype)
    max_frames = adapter.config.motion_max_seq_length
    if cfg.num_frames > max_frames:
        raise EveError(f"model.num_frames={cfg.num_frames} exceeds the motion adapter's {max_frames} frames")
    try:
        # Copies the 2D weights; one backbone from here on. Its float32-modules warning is about casting an empty
        # list of modules, hence silenced.
        with diffusers_log_level(logging.ERROR):
            unet = UNetMotionModel.from_unet2d(unet2d, adapter)
    except ValueError as e:
        raise EveError(f"model.motion_adapter does not fit model.pretrained's UNet: {e}") from None
    del unet2d, adapter
    controlnet = from_pretrained(ControlNetModel, cfg.controlnet, "controlnet", torch_dtype=dtype)
    sparsectrl = None
    if cfg.first_frame == "sparsectrl":
        if not cfg.sparsectrl:
            raise EveError("model.first_frame is 'sparsectrl' but model.sparsectrl names no weights")
        sparsectrl = from_pretrained(SparseControlNetModel, cfg.sparsectrl, "sparsectrl", torch_dtype=dtype)
    text = load_text(cfg)
    codec = load_codec(cfg, unet.config.in_channels)
    for m in (unet, controlnet, sparsectrl):
        if m is not None:
            frozen(m)
    return dict(
        unet=unet,
        controlnet=controlnet,
        text=text,
        codec=codec,
        schedule=schedule,
        sparsectrl=sparsectrl,
        num_frames=cfg.num_frames,
        resolution=cfg.resolution,
        first_frame=cfg.first_frame,
        controlnet_text=cfg.controlnet_text,
        controlnet_scale=cfg.controlnet_scale,
        sparsectrl_scale=cfg.sparsectrl_scale,
        batch_guidance=cfg.batch_guidance,
    )
