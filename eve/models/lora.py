"""The student's LoRA θ_align on the spatial backbone (paper §3.1 "Final Architecture"), through peft.

Only spatial UNet layers get it: the motion modules are excluded by name and the ControlNet is a separate module.
peft initialises B = 0, so a fresh LoRA leaves the student equal to the plug-and-play model.

Files: eve's own (`student_lora.safetensors`, peft keys, metadata: rank, alpha, targets and optionally the resolved
config) and diffusers' LoRA format (`pytorch_lora_weights.safetensors`, keys prefixed `unet.`), which
`pipe.load_lora_weights` reads. `load_lora` reads both.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from eve.errors import EveError

logger = logging.getLogger(__name__)

ADAPTER = "student"
MOTION_EXCLUDE = r".*motion_modules.*"  # never adapt the temporal layers (paper: LoRA over the T2I backbone)
EVE_LORA_NAME = "student_lora.safetensors"
DIFFUSERS_LORA_NAME = "pytorch_lora_weights.safetensors"


def add_lora(unet: nn.Module, rank: int, alpha: float | None, targets: list[str]) -> None:
    """Attach a zero-initialised LoRA to the spatial layers named in `targets` (module-name suffixes)."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank,
        lora_alpha=alpha if alpha is not None else rank,
        target_modules=list(targets),
        exclude_modules=MOTION_EXCLUDE,
        init_lora_weights=True,  # B = 0: student == plug-and-play at step 0
    )
    unet.add_adapter(config, adapter_name=ADAPTER)
    for name, p in unet.named_parameters():
        p.requires_grad_("lora_" in name)


def has_lora(unet: nn.Module) -> bool:
    return ADAPTER in (getattr(unet, "peft_config", None) or {})


def lora_state_dict(unet: nn.Module) -> dict[str, Tensor]:
    """peft-keyed LoRA tensors, e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight`."""
    from peft.utils import get_peft_model_state_dict

    return {k: v.detach().clone().contiguous() for k, v in get_peft_model_state_dict(unet, adapter_name=ADAPTER).items()}


def lora_parameters(unet: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in unet.named_parameters() if "lora_" in n]


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
    from diffusers import StableDiffusionPipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = unet.peft_config[ADAPTER].to_dict()
    with tempfile.TemporaryDirectory(dir=out, prefix=".lora-") as tmp:
        StableDiffusionPipeline.save_lora_weights(
            tmp, unet_lora_layers=lora_state_dict(unet), unet_lora_adapter_metadata=config, safe_serialization=True
        )
        os.replace(Path(tmp) / DIFFUSERS_LORA_NAME, out / DIFFUSERS_LORA_NAME)
    return out / DIFFUSERS_LORA_NAME


def find_lora_file(path: str | os.PathLike) -> Path:
    """The LoRA file named by a file path or a checkpoint directory holding one."""
    p = Path(path)
    if p.is_dir():
        for name in (EVE_LORA_NAME, DIFFUSERS_LORA_NAME):
            if (p / name).is_file():
                return p / name
        raise EveError(f"checkpoint folder {p} holds neither {EVE_LORA_NAME} nor {DIFFUSERS_LORA_NAME}")
    if not p.is_file():
        raise EveError(f"checkpoint not found: {p}")
    return p


def read_lora(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(peft-keyed tensors, metadata) from either format."""
    p = find_lora_file(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise EveError(f"cannot read checkpoint {p}: {e}") from None
    tensors = {k.removeprefix("unet."): v for k, v in tensors.items() if not k.startswith("text_encoder.")}
    if not tensors or not all(".lora_A." in k or ".lora_B." in k for k in tensors):
        raise EveError(f"checkpoint {p} holds no UNet LoRA weights (keys like ...lora_A.weight)")
    return tensors, meta


def load_lora(unet: nn.Module, path: str | os.PathLike) -> dict[str, str]:
    """Attach (or replace) the student LoRA from a file; returns the file's metadata.

    Rank and targets come from the tensors themselves, alpha from the metadata (eve's or diffusers'); loading is
    strict: every LoRA layer of the file must land and none of the new adapter may stay unset.
    """
    from peft.utils import set_peft_model_state_dict

    tensors, meta = read_lora(path)
    rank = next(v.shape[0] for k, v in tensors.items() if ".lora_A." in k)
    alpha = float(meta["lora_alpha"]) if "lora_alpha" in meta else None
    if alpha is None and "lora_adapter_metadata" in meta:  # diffusers packs the LoraConfig as {"unet.lora_alpha": ...}
        packed = json.loads(meta["lora_adapter_metadata"])
        alpha = packed.get("unet.lora_alpha", packed.get("lora_alpha"))
        alpha = float(alpha) if alpha is not None else None
    modules = sorted({k.split(".lora_")[0] for k in tensors})
    if has_lora(unet):
        unet.delete_adapters(ADAPTER)
    # Full module names as targets: exactly the layers the file adapts.
    add_lora(unet, rank, alpha if alpha is not None else rank, modules)
    expected = set(lora_state_dict(unet))
    got = set(tensors)
    if expected != got:
        missing, unexpected = sorted(expected - got)[:5], sorted(got - expected)[:5]
        raise EveError(f"checkpoint {path} does not fit this backbone: missing {missing}, unexpected {unexpected}")
    result = set_peft_model_state_dict(unet, tensors, adapter_name=ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise EveError(f"checkpoint {path}: unexpected keys {result.unexpected_keys[:5]}")
    ref = next(p for p in unet.parameters() if not p.requires_grad)
    for p in lora_parameters(unet):
        p.data = p.data.to(ref.device)
    kinds = sorted({_layer_kind(m) for m in modules})
    logger.info("applied LoRA %s: rank %d, alpha %g, %d layers (%s)%s", find_lora_file(path), rank,
                alpha if alpha is not None else rank, len(modules), ", ".join(kinds),
                f", step {meta['step']}" if "step" in meta else "")
    return meta


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
