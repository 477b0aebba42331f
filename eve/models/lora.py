"""The student's LoRA θ_align on the spatial backbone (paper §3.1 "Final Architecture"), through peft.

Only spatial UNet layers get it: the motion modules are excluded by name and the ControlNet is a separate module.
peft initialises B = 0, so a fresh LoRA leaves the student equal to the plug-and-play model.

Files written: eve's own (`student_lora.safetensors`, peft keys, metadata: rank, alpha, targets and optionally the
resolved config) and diffusers' LoRA format (`pytorch_lora_weights.safetensors`, keys prefixed `unet.`), which
`pipe.load_lora_weights` reads. Files read (`load_lora`, issue 11): those, diffusers training scripts' legacy keys,
kohya / A1111 and peft adapter folders, through diffusers' and peft's own loaders (FORMATS).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from eve.errors import EveError
from eve.utils.files import ends_digest
from eve.utils.logging import diffusers_log_level

logger = logging.getLogger(__name__)

ADAPTER = "student"  # θ_align, the LoRA FDD trains
USER = "user"  # θ_LoRA, a user's frozen style or subject LoRA that LoRA alignment (paper §4.4) aligns with θ_edit
# the fake scores of distribution matching (fdd.score=dmd): one LoRA per teacher, trained online to denoise the
# student's outputs as that teacher's configuration sees them (eve/train/fdd.py); never saved with the student
FAKE_EDIT, FAKE_VIDEO = "fake_edit", "fake_video"
TRAINED = (ADAPTER, FAKE_EDIT, FAKE_VIDEO)  # adapters that train; any other (the user's) stays frozen
MOTION_EXCLUDE = r".*motion_modules.*"  # never adapt the temporal layers (paper: LoRA over the T2I backbone)
EVE_LORA_NAME = "student_lora.safetensors"
DIFFUSERS_LORA_NAME = "pytorch_lora_weights.safetensors"


def add_lora(unet: nn.Module, rank: int, alpha: float | None, targets: list[str], adapter: str = ADAPTER) -> None:
    """Attach a zero-initialised LoRA to the spatial layers named in `targets` (module-name suffixes); only the
    trained adapters (TRAINED) keep requires_grad."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=list(targets),
        exclude_modules=MOTION_EXCLUDE,
        init_lora_weights=True,  # B = 0: student == plug-and-play at step 0
    )
    with expected_peft_warnings():
        unet.add_adapter(config, adapter_name=adapter)
    trainable = {id(p) for a in TRAINED for p in lora_parameters(unet, a)}
    for p in unet.parameters():
        p.requires_grad_(id(p) in trainable)


@contextmanager
def expected_peft_warnings() -> Iterator[None]:
    """Silence what peft warns about on purpose here: a second adapter beside the first (θ_align beside θ_LoRA) and
    a file's explicit layer list making eve's motion-module exclusion match nothing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(multiple adapters|no modules were excluded).*")
        yield


def has_lora(unet: nn.Module, adapter: str = ADAPTER) -> bool:
    return adapter in (getattr(unet, "peft_config", None) or {})


def lora_state_dict(unet: nn.Module) -> dict[str, Tensor]:
    """peft-keyed LoRA tensors, e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight`."""
    from peft.utils import get_peft_model_state_dict

    if not has_lora(unet):
        return {}
    state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    return {k: v.detach().clone().contiguous() for k, v in state.items()}


def lora_parameters(unet: nn.Module, adapter: str | None = ADAPTER) -> list[nn.Parameter]:
    """The LoRA weights of one adapter (peft names them `...lora_A.<adapter>.weight`); None: of every adapter."""
    return [p for n, p in unet.named_parameters() if "lora_" in n and (adapter is None or f".{adapter}." in n)]


def atomic_save(tensors: dict[str, Tensor], path: str | os.PathLike, metadata: dict[str, str]) -> None:
    """Write safetensors to a temporary name, then rename: a kill never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_lora(unet: nn.Module, path: str | os.PathLike, *, config_yaml: str | None = None, extra: dict | None = None) -> None:
    """eve format: peft keys; metadata holds rank, alpha, targets and (optionally) the resolved config."""
    cfg = unet.peft_config[ADAPTER]
    meta = {
        "format": "eve-lora",
        "lora_rank": str(cfg.r),
        "lora_alpha": str(cfg.lora_alpha),
        "lora_targets": json.dumps(sorted(cfg.target_modules)),
    }
    if config_yaml is not None:
        meta["config"] = config_yaml
    for k, v in (extra or {}).items():
        meta[k] = str(v)
    atomic_save(lora_state_dict(unet), path, meta)


def export_diffusers_lora(unet: nn.Module, out_dir: str | os.PathLike) -> Path:
    """diffusers format, written by diffusers' own `save_lora_weights` (keys `unet.*`, the LoraConfig as metadata):
    `out_dir/pytorch_lora_weights.safetensors`, loadable with `pipe.load_lora_weights(out_dir)`."""
    return write_diffusers_lora(lora_state_dict(unet), unet.peft_config[ADAPTER].to_dict(), out_dir)


def write_diffusers_lora(tensors: dict[str, Tensor], config: dict, out_dir: str | os.PathLike) -> Path:
    """peft-keyed UNet LoRA tensors and their LoraConfig (as a dict) -> `out_dir/pytorch_lora_weights.safetensors`
    by diffusers' `save_lora_weights`, written beside and renamed into place."""
    from diffusers import StableDiffusionPipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".lora-") as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=tensors, unet_lora_adapter_metadata=config, safe_serialization=True
        )
        os.replace(Path(tmp) / DIFFUSERS_LORA_NAME, out / DIFFUSERS_LORA_NAME)
    return out / DIFFUSERS_LORA_NAME


PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"  # PeftModel.save_pretrained


@dataclass(frozen=True)
class LoraFile:
    """What a LoRA file is, read from its header alone (keys and metadata, no tensor data)."""

    path: Path
    format: str  # one of FORMATS
    unet_keys: int
    text_encoder_keys: int
    meta: dict


FORMATS = {
    "eve": "eve (peft keys, eve metadata)",
    "diffusers": "diffusers (unet./text_encoder. prefixes, lora_A/lora_B)",
    "diffusers-legacy": "diffusers training scripts (convert_state_dict_to_diffusers: lora.down/lora.up)",
    "kohya": "kohya / A1111 (lora_unet_/lora_te_ prefixes)",
    "peft": "peft adapter folder (PeftModel.save_pretrained)",
}


def find_lora_file(path: str | os.PathLike) -> Path:
    """The LoRA file named by a file path or a folder holding one (eve's, diffusers' or a peft adapter's)."""
    p = Path(path)
    if p.is_dir():
        for name in (EVE_LORA_NAME, DIFFUSERS_LORA_NAME, PEFT_WEIGHTS):
            if (p / name).is_file():
                return p / name
        raise EveError(f"checkpoint folder {p} holds none of {EVE_LORA_NAME}, {DIFFUSERS_LORA_NAME}, {PEFT_WEIGHTS}")
    if not p.is_file():
        raise EveError(f"checkpoint not found: {p}")
    return p


def inspect_lora(path: str | os.PathLike) -> LoraFile:
    """The file's format and what it adapts, from its header: a file that is no LoRA eve can read is one EveError
    line before any model weight loads."""
    p = find_lora_file(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            keys, meta = list(f.keys()), f.metadata() or {}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise EveError(f"cannot read checkpoint {p}: {' '.join(str(e).split())[:200]}") from None
    te = [k for k in keys if k.startswith(("text_encoder", "lora_te"))]  # text_encoder_2 / lora_te2_ too
    if meta.get("format") == "eve-lora":
        fmt = "eve"
    elif keys and all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        fmt = "kohya"
    elif p.name == PEFT_WEIGHTS and (p.parent / PEFT_CONFIG).is_file():
        fmt = "peft"
    elif any(".lora.down." in k or ".lora.up." in k or ".lora_linear_layer." in k for k in keys):
        fmt = "diffusers-legacy"
    elif any(".lora_A." in k for k in keys):
        fmt = "diffusers"
    else:
        shown = ", ".join(keys[:2]) or "no tensors"
        raise EveError(f"checkpoint {p} is not a LoRA eve can read (keys like {shown}); formats: "
                       + "; ".join(FORMATS.values()))
    foreign = [k for k in keys if k.startswith(("transformer.", "text_encoder_2.", "lora_te2_", "lora_transformer_"))]
    if foreign:
        raise EveError(f"checkpoint {p} is a LoRA for another architecture (keys like {foreign[0]}): eve's backbone "
                       "is an SD-1.5-family UNet with one text encoder")
    unet = len(keys) - len(te) - sum(k.endswith(".alpha") for k in keys if k not in te)
    if fmt != "peft" and unet == 0 and not te:
        raise EveError(f"checkpoint {p} holds no LoRA weights")
    return LoraFile(p, fmt, unet, len(te), meta)


def inspect_user_lora(path: str | os.PathLike) -> LoraFile:
    """inspect_lora for a user's θ_LoRA (model.lora, edit.py --lora), whose errors name the field, and which must
    adapt UNet layers only."""
    try:
        info = inspect_lora(path)
    except EveError as e:
        raise EveError(f"model.lora: {e}") from None
    if info.text_encoder_keys:
        raise EveError(f"model.lora: {info.path} also adapts the text encoder ({info.text_encoder_keys} tensors): eve "
                       "aligns UNet LoRAs only, because the LoRA teacher and the edit teacher must read one caption "
                       "embedding; save the LoRA without its text-encoder part (train it with the text encoder "
                       "frozen) and align that")
    if info.unet_keys == 0 and info.format != "peft":
        raise EveError(f"model.lora: {info.path} adapts no UNet layer")
    return info


def read_lora(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(peft-keyed UNet tensors, metadata) of an eve or diffusers-format file: what training resumes from and what
    tests compare. Editing loads any format through `load_lora`."""
    info = inspect_lora(path)
    if info.format not in ("eve", "diffusers"):
        raise EveError(f"checkpoint {info.path} is in {FORMATS[info.format]} format; eve's training reads its own")
    with safe_open(str(info.path), framework="pt") as f:
        tensors = {k.removeprefix("unet."): f.get_tensor(k) for k in f.keys() if not k.startswith("text_encoder.")}
    return tensors, info.meta


def load_lora(unet: nn.Module, path: str | os.PathLike, *, text_encoder: nn.Module | None = None,
              adapter: str = ADAPTER) -> dict[str, str]:
    """Attach (or replace) the LoRA `adapter` from a file in any format of FORMATS; returns the file's metadata.

    Reading goes through diffusers' and peft's own loaders and converters (`lora_state_dict`, which converts
    kohya/A1111 keys, then `load_lora_adapter`, which converts legacy diffusers keys and builds the LoraConfig with
    per-layer rank and alpha; peft adapters through `PeftModel.from_pretrained`), under the adapter name the roles
    switch: the student's θ_align (ADAPTER) or a user's θ_LoRA (USER). Text-encoder LoRA layers go into
    `text_encoder` for the student; a user LoRA that adapts the text encoder is refused (the LoRA teacher and the
    edit teacher would read one caption through two different encoders). Strict: every layer the file adapts must
    land in this backbone. The weights are frozen either way.
    """
    info = inspect_user_lora(path) if adapter == USER else inspect_lora(path)
    if info.text_encoder_keys and text_encoder is None:
        raise EveError(f"checkpoint {info.path} adapts the text encoder, and no text encoder was given")
    remove_lora(unet, text_encoder, adapter)
    if info.format == "peft":
        _load_peft_adapter(unet, info.path.parent, adapter)
    else:
        _load_with_diffusers(unet, text_encoder, info, adapter)
    for p in lora_parameters(unet, adapter):
        p.requires_grad_(False)
    state = _adapter_state(unet, adapter)
    modules = sorted({k.split(".lora_")[0] for k in state})
    config = unet.peft_config[adapter]
    alphas = sorted({config.lora_alpha, *config.alpha_pattern.values()})
    ranks = sorted({v.shape[0] for k, v in state.items() if ".lora_A." in k})
    te = _adapted_layers(text_encoder, adapter) if text_encoder is not None else 0
    logger.info("applied %sLoRA %s (%s): rank %s, alpha %s, %d UNet layers (%s)%s%s",
                "user " if adapter == USER else "", info.path, FORMATS[info.format],
                "/".join(map(str, ranks)), "/".join(f"{a:g}" for a in alphas), len(modules),
                ", ".join(sorted({_layer_kind(m) for m in modules})),
                f", {te} text-encoder layers" if te else "",
                f", step {info.meta['step']}" if "step" in info.meta else "")
    return info.meta


def _adapter_state(unet: nn.Module, adapter: str) -> dict[str, Tensor]:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(unet, adapter_name=adapter)


def remove_lora(unet: nn.Module, text_encoder: nn.Module | None = None, adapter: str = ADAPTER) -> None:
    """Drop one adapter from the UNet (and the text encoder) if attached."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if has_lora(unet, adapter):
        unet.delete_adapters(adapter)
    if text_encoder is not None and adapter in (getattr(text_encoder, "peft_config", None) or {}):
        for m in text_encoder.modules():
            if isinstance(m, BaseTunerLayer):
                m.delete_adapter(adapter)
        text_encoder.peft_config.pop(adapter)


def _load_with_diffusers(unet: nn.Module, text_encoder: nn.Module | None, info: LoraFile, adapter: str) -> None:
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader

    try:
        # diffusers logs errors in many lines: eve says one
        with diffusers_log_level(logging.CRITICAL), expected_peft_warnings():
            state, alphas, meta = Loader.lora_state_dict(str(info.path), return_lora_metadata=True)
            if not any(k.startswith(("unet.", "text_encoder.")) for k in state):  # peft keys of the UNet alone
                state = {f"unet.{k}": v for k, v in state.items()}
            if info.format == "eve":  # its metadata is eve's own
                meta = {"unet.r": int(info.meta["lora_rank"]), "unet.lora_alpha": float(info.meta["lora_alpha"]),
                        "unet.target_modules": sorted({k.split(".lora_")[0].removeprefix("unet.") for k in state})}
            Loader.load_lora_into_unet(state, alphas, unet, adapter_name=adapter, metadata=meta or None)
            if text_encoder is not None and any(k.startswith("text_encoder.") for k in state):
                Loader.load_lora_into_text_encoder(state, alphas, text_encoder, adapter_name=adapter,
                                                   metadata=meta or None)
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        remove_lora(unet, text_encoder, adapter)
        raise EveError(f"{_what(adapter)} {info.path} does not fit this backbone: {' '.join(str(e).split())[:300]}") from None
    # one down (A) and one up (B) matrix per adapted layer, whatever the file's key names
    for prefix, module in (("unet.", unet), ("text_encoder.", text_encoder)):
        expected = sum(k.startswith(prefix) and not k.endswith(".alpha") for k in state) // 2
        landed = _adapted_layers(module, adapter) if module is not None else 0
        if landed != expected:
            remove_lora(unet, text_encoder, adapter)
            raise EveError(f"{_what(adapter)} {info.path} does not fit this backbone: {expected} {prefix[:-1]} layers in "
                           f"the file, {landed} found in the model")


def _what(adapter: str) -> str:
    """How error lines name the file: the user's LoRA by its config field, the student's as a checkpoint."""
    return "model.lora: LoRA" if adapter == USER else "checkpoint"


def _adapted_layers(module: nn.Module, adapter: str = ADAPTER) -> int:
    """Layers of `module` that carry `adapter`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return sum(isinstance(m, BaseTunerLayer) and adapter in getattr(m, "lora_A", {}) for m in module.modules())


def _load_peft_adapter(unet: nn.Module, folder: Path, adapter: str) -> None:
    """A peft adapter folder, by peft's own loader (it adapts the model in place; the wrapper is dropped). Its
    target names would also match the motion modules' attention, which eve's LoRAs never adapt: they are excluded,
    and every layer the file holds must land."""
    from peft import LoraConfig, PeftModel
    from safetensors import safe_open

    try:
        config = LoraConfig.from_pretrained(str(folder))
        config.exclude_modules = MOTION_EXCLUDE
        # diffusers logs errors in many lines: eve says one
        with diffusers_log_level(logging.CRITICAL), expected_peft_warnings():
            PeftModel.from_pretrained(unet, str(folder), adapter_name=adapter, is_trainable=False, config=config)
    except (ValueError, RuntimeError, KeyError, TypeError, AttributeError) as e:
        remove_lora(unet, adapter=adapter)
        raise EveError(f"{_what(adapter)} {folder} does not fit this backbone: {' '.join(str(e).split())[:300]}") from None
    unet._hf_peft_config_loaded = True  # diffusers' adapter switches (the roles) accept peft-injected layers
    with safe_open(str(folder / PEFT_WEIGHTS), framework="pt") as f:
        expected = sum(".lora_A." in k for k in f.keys())
    if _adapted_layers(unet, adapter) != expected:
        landed = _adapted_layers(unet, adapter)
        remove_lora(unet, adapter=adapter)
        raise EveError(f"{_what(adapter)} {folder} does not fit this backbone: {expected} layers in the file, {landed} "
                       "found in the model")


def _layer_kind(module: str) -> str:
    """`...attn1.to_out.0` -> `to_out.0`, `...ff.net.0.proj` -> `ff.net.0.proj`: the default target it ends with."""
    from eve.config import DEFAULT_LORA_TARGETS

    for target in sorted(DEFAULT_LORA_TARGETS, key=len, reverse=True):
        if module.endswith("." + target):
            return target
    return next(p for p in reversed(module.split(".")) if not p.isdigit())


def load_lora_into(unet: nn.Module, path: str | os.PathLike) -> dict[str, str]:
    """Copy a LoRA file's tensors into the already attached student adapter, in place (the parameter objects an
    optimizer holds stay the same: this is how training resumes). The key sets must match exactly."""
    from peft.utils import set_peft_model_state_dict

    tensors, meta = read_lora(path)
    expected = set(lora_state_dict(unet))
    if set(tensors) != expected:
        raise EveError(f"LoRA {path} does not match the attached adapter (rank or targets differ)")
    before = [p for p in lora_parameters(unet)]
    set_peft_model_state_dict(unet, tensors, adapter_name=ADAPTER)
    assert all(a is b for a, b in zip(before, lora_parameters(unet)))
    return meta


def lora_fingerprint(ref: str | None) -> object:
    """The user's LoRA (model.lora): its weights file (and a peft folder's adapter_config.json), never the other files
    of its folder (a trainer's metrics.jsonl and samples.png, other LoRAs)."""
    if not ref:
        return None
    f = find_lora_file(ref)
    files = [f] + ([f.parent / PEFT_CONFIG] if (f.parent / PEFT_CONFIG).is_file() else [])
    return [(g.name, g.stat().st_size, ends_digest(g)) for g in files]
