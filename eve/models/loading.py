"""Load each frozen component by local folder or hub id through the components' own `from_pretrained`.

A reference that exists on disk is loaded from there with `local_files_only=True`; anything else must look like a
hub id (`org/name`) and is only fetched when the user named one, never silently; HF_HUB_OFFLINE=1 is honoured by
huggingface_hub. Every failure becomes an EveError naming the config field and the reference.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch

from eve.errors import EveError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve(ref: str, field: str) -> tuple[str, bool]:
    """(reference, is_local). A missing local path is an EveError; a hub id is returned as is."""
    if not ref:
        raise EveError(f"model.{field} is empty")
    p = Path(ref).expanduser()
    if p.exists():
        if not p.is_dir():
            raise EveError(f"model.{field}: {ref} is a file, expected a weight folder")
        return str(p), True
    if not p.is_absolute() and _HUB_ID.match(ref) and not ref.startswith("."):
        return ref, False
    raise EveError(f"weight folder not found: {ref} (named by model.{field})")


def from_pretrained(cls: Any, ref: str, field: str, subfolder: str | None = None, **kwargs) -> Any:
    """`cls.from_pretrained(ref, subfolder=...)` with eve's offline policy and error messages."""
    path, local = resolve(ref, field)
    where = f"{path}/{subfolder}" if subfolder else path
    if local and subfolder and not (Path(path) / subfolder).is_dir():
        raise EveError(f"weight folder not found: {where} (model.{field} has no {subfolder}/ folder)")
    if not local:
        logger.info("loading model.%s from the hub id %s", field, ref)
    try:
        if subfolder:
            kwargs["subfolder"] = subfolder
        return cls.from_pretrained(path, local_files_only=local or None, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if local else " (hub ids need network access; set a local folder for offline use)"
        raise EveError(f"cannot load model.{field} from {where}: {first}{hint}") from None


def load_scheduler_config(ref: str) -> dict:
    """The `scheduler/scheduler_config.json` of an SD-family pipeline folder, as a dict."""
    from diffusers import DDIMScheduler

    path, local = resolve(ref, "pretrained")
    if local and not (Path(path) / "scheduler").is_dir():
        raise EveError(f"weight folder not found: {path}/scheduler (model.pretrained has no scheduler/ folder)")
    try:
        return dict(DDIMScheduler.load_config(path, subfolder="scheduler", local_files_only=local or None))
    except (OSError, ValueError) as e:
        raise EveError(f"cannot read the noise schedule of model.pretrained ({path}/scheduler): {e}") from None


def load_timm(ref: str, field: str = "dino", **kwargs) -> torch.nn.Module:
    """A timm model from a local timm folder (config.json + model.safetensors) or a timm hub id."""
    import timm

    path, local = resolve(ref, field)
    name = f"local-dir:{path}" if local else f"hf-hub:{path}"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, ValueError, RuntimeError, FileNotFoundError) as e:
        raise EveError(f"cannot load model.{field} from {path}: {str(e).strip().splitlines()[0]}") from None
