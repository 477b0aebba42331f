"""Every config field and its default, in one place. YAML files hold overrides only.

A config file is a YAML mapping with the sections below (unknown keys and wrong types are errors naming the file
and key); `key=value` dotlist overrides go on top. Relative weight paths in `model` are resolved against the
directory of the YAML file that names them, so `OUT_DIR/eve.yaml` works from any working directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from eve.errors import EveError

# Layers of the spatial backbone that get the student LoRA (paper-notes OQ-13: attention q/k/v/out and the
# transformer projections and feed-forward). Motion modules and the ControlNet never get it.
DEFAULT_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]


@dataclass
class ModelConfig:
    """The frozen components and how they are composed (paper §3.1). Each weight field is a local folder or a
    hub id; hub ids are only fetched when the user names one and HF_HUB_OFFLINE is not set."""

    pretrained: str = MISSING  # SD-family pipeline folder: unet/, text_encoder/, tokenizer/, scheduler/, [vae/]
    controlnet: str = MISSING  # image-edit adapter θ_edit (diffusers ControlNetModel, e.g. control_v11e_sd15_ip2p)
    motion_adapter: str = MISSING  # video adapter θ_video (diffusers MotionAdapter, AnimateDiff)
    sparsectrl: Optional[str] = None  # SparseControlNetModel; required when first_frame == "sparsectrl"
    dino: Optional[str] = None  # discriminator feature net (timm hub id or local timm folder); used by training
    codec: Literal["vae", "identity"] = "vae"  # "identity": a pixel-space backbone (tiny set, shapes world)
    num_frames: int = 8  # frames the video adapter sees at once (paper: 8); the sliding-window length
    resolution: int = 512  # short side of the working size in pixels
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"  # dtype of the frozen weights
    # How already-edited frames (the edited first frame) condition the video adapter; see eve/models/known.py.
    first_frame: Literal["replace", "sparsectrl"] = "replace"
    controlnet_text: Literal["instruction", "caption"] = "instruction"  # paper: ControlNet sees the instruction
    controlnet_scale: float = 1.0  # multiplier on the edit adapter's residuals
    sparsectrl_scale: float = 1.0
    prediction_type: Optional[Literal["epsilon", "v_prediction", "sample"]] = None  # None: the scheduler's
    zero_terminal_snr: Optional[bool] = None  # None: the scheduler's `rescale_betas_zero_snr`
    lora_rank: int = 64  # paper-notes OQ-13
    lora_alpha: Optional[float] = None  # None: equal to the rank
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))


@dataclass
class EditConfig:
    """Inference (paper §4 "Training Details": DDIM; the first frame is edited by the edit adapter alone)."""

    steps: int = 20  # student DDIM steps; K-bin training makes more steps than k usable (paper §3.3)
    guidance: float = 1.0  # student text CFG; 1 = off, distilled students run without CFG (OQ-22)
    image_guidance: float = 1.0  # student input-image CFG; 1 = off
    teacher_steps: int = 50  # edit-teacher DDIM steps for the first frame
    teacher_guidance: float = 7.5  # edit-teacher text CFG (ip2p-style, OQ-6)
    teacher_image_guidance: float = 1.5  # edit-teacher image CFG
    timestep_spacing: Literal["trailing", "leading", "linspace"] = "trailing"
    window_overlap: int = 1  # already-edited frames each later window starts with (OQ-24)
    max_long_side: Optional[int] = None  # cap on the working size's long side (None: no cap)
    seed: int = 0


@dataclass
class EveConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    edit: EditConfig = field(default_factory=EditConfig)


_WEIGHT_FIELDS = ("pretrained", "controlnet", "motion_adapter", "sparsectrl", "dino")


def _resolve_paths(model: dict, base: Path) -> None:
    """Make relative weight paths absolute against the YAML's directory; leave hub ids and absolute paths alone."""
    for key in _WEIGHT_FIELDS:
        ref = model.get(key)
        if not isinstance(ref, str) or not ref:
            continue
        p = Path(os.path.expanduser(ref))
        if p.is_absolute():
            continue
        local = base / p
        if ref.startswith((".", "~")) or local.exists():
            model[key] = str(local.resolve())


def load_config(path: str | os.PathLike | None, overrides: list[str] | None = None, schema: type = EveConfig):
    """Schema defaults <- YAML file <- dotlist overrides, as a typed dataclass instance.

    Raises EveError naming the file and key for a missing or unreadable file, unknown keys, bad values and
    required fields left unset.
    """
    if path is None:
        return _merge(None, "defaults", overrides, schema)
    p = Path(path)
    if not p.is_file():
        raise EveError(f"config file not found: {path}")
    try:
        raw = OmegaConf.to_container(OmegaConf.load(p))
    except Exception as e:  # YAML syntax errors come in several types
        raise EveError(f"cannot read config {path}: {_one_line(e)}") from None
    if not isinstance(raw, dict):
        raise EveError(f"config {path} must be a YAML mapping, got {type(raw).__name__}")
    if isinstance(raw.get("model"), dict):
        _resolve_paths(raw["model"], p.resolve().parent)
    return _merge(raw, str(path), overrides, schema)


def config_from_text(text: str, origin: str, overrides: list[str] | None = None, schema: type = EveConfig):
    """The same as load_config for YAML text carried elsewhere (a checkpoint's metadata); paths stay as written."""
    try:
        raw = OmegaConf.to_container(OmegaConf.create(text))
    except Exception as e:
        raise EveError(f"cannot read the config stored in {origin}: {_one_line(e)}") from None
    return _merge(raw, origin, overrides, schema)


def _one_line(e: Exception) -> str:
    """A YAML error as "line L, column C: problem" (PyYAML's own text spans several lines)."""
    mark, problem = getattr(e, "problem_mark", None), getattr(e, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(e).split())


def _merge(raw: dict | None, where: str, overrides: list[str] | None, schema: type):
    try:
        merged = OmegaConf.structured(schema)
        if raw is not None:
            merged = OmegaConf.merge(merged, raw)
        if overrides:
            where = "command-line overrides"
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise EveError(f"overrides must look like key=value, got {bad}")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(overrides))
        missing = _missing_keys(merged)
        if missing:
            raise EveError(f"config {where}: required field(s) not set: {', '.join(sorted(missing))}")
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        msg = str(e).strip().splitlines()
        key = getattr(e, "full_key", None)
        raise EveError(f"config {where}: {msg[0]}" + (f" (key: {key})" if key else "")) from None


def _missing_keys(cfg, prefix: str = "") -> list[str]:
    out = []
    for k in cfg:
        full = f"{prefix}{k}"
        if OmegaConf.is_missing(cfg, k):
            out.append(full)
        else:
            v = cfg[k]
            if OmegaConf.is_dict(v):
                out.extend(_missing_keys(v, full + "."))
    return out


def to_yaml(cfg) -> str:
    """The resolved config as YAML text (saved next to runs and inside checkpoints)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))
