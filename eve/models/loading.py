"""Load each frozen component by local folder or hub id through the components' own `from_pretrained`.

A reference that exists on disk is loaded from there with `local_files_only=True`; anything else must look like a
hub id (`org/name`) and is only fetched when the user named one, never silently. Before a hub id loads, one quick
look decides how: the hub's host reachable (fetch), or not (HF_HUB_OFFLINE=1, no network) but a copy in the local
cache (load it, no retries), or neither: one EveError naming the field and the fix, not 30 s of retries. Every
failure becomes an EveError naming the config field and the reference.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse
from typing import Any

import torch

from eve.config import WEIGHT_FIELDS
from eve.errors import EveError

logger = logging.getLogger(__name__)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def field_name(field: str) -> str:
    """How error lines name a weight reference: a model config field (`pretrained` -> model.pretrained), or as given
    (a dotted config key, a command-line flag such as --clip)."""
    return field if field.startswith("-") or "." in field else f"model.{field}"


def resolve(ref: str, field: str) -> tuple[str, bool]:
    """(reference, is_local). A missing local path is an EveError; a hub id is returned as is."""
    name = field_name(field)
    if not ref:
        raise EveError(f"{name} is empty")
    p = Path(ref).expanduser()
    if p.exists():
        if not p.is_dir():
            raise EveError(f"{name}: {ref} is a file, expected a weight folder")
        return str(p), True
    if not p.is_absolute() and _HUB_ID.match(ref) and not ref.startswith("."):
        return ref, False
    raise EveError(f"weight folder not found: {ref} (named by {name})")


def check_weight_refs(model_cfg) -> None:
    """Every weight the model config names is a local folder or a hub id this machine can fetch or has cached;
    called before any weight loads so a bad reference costs seconds, not a half-made run."""
    for field in WEIGHT_FIELDS:
        ref = getattr(model_cfg, field, None)
        if ref and field == "lora":  # a LoRA file or folder, read from its header
            from eve.models.lora import inspect_user_lora

            inspect_user_lora(ref)
        elif ref:
            path, local = resolve(ref, field)
            if not local:
                hub_cache_only(path, field)


@functools.lru_cache(maxsize=None)
def _hub_reachable() -> str | None:
    """None when the hub can be reached, else why not."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None  # behind a proxy a direct connection says nothing: let huggingface_hub try
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return None
    except OSError as e:
        return f"{host} cannot be reached: {e.strerror or e}"


def _snapshot(ref: str) -> str | None:
    """The folder of the cached copy of a hub id, or None."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(ref, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def hub_cache_only(ref: str, field: str) -> str | None:
    """For a hub id: None = fetch it (the hub is reachable), else the folder of the cached copy to load without any
    network call; neither possible = EveError naming the field and the fix."""
    why = _hub_reachable()
    if why is None:
        return None
    cached = _snapshot(ref)
    if cached is not None:
        logger.info("%s: %s; using the cached copy of %s", field_name(field), why, ref)
        return cached
    name = field_name(field)
    raise EveError(f"{name}={ref} is a hub id, and {why} and no copy is cached: set {name} to a local folder "
                   "(docs/editing.md: Weights and offline use), or run with network access")


def from_pretrained(cls: Any, ref: str, field: str, subfolder: str | None = None, **kwargs) -> Any:
    """`cls.from_pretrained(ref, subfolder=...)` with eve's offline policy and error messages."""
    path, local = resolve(ref, field)
    where = f"{path}/{subfolder}" if subfolder else path
    if local and subfolder and not (Path(path) / subfolder).is_dir():
        raise EveError(f"weight folder not found: {where} ({field_name(field)} has no {subfolder}/ folder)")
    cache_only = local or hub_cache_only(path, field) is not None
    if not local:
        logger.info("loading %s from the hub id %s%s", field_name(field), ref, " (cached copy)" if cache_only else "")
    try:
        if subfolder:
            kwargs["subfolder"] = subfolder
        return cls.from_pretrained(path, local_files_only=cache_only or None, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = "" if local else " (hub ids need network access; set a local folder for offline use)"
        raise EveError(f"cannot load {field_name(field)} from {where}: {first}{hint}") from None


def load_scheduler_config(ref: str) -> dict:
    """The `scheduler/scheduler_config.json` of an SD-family pipeline folder, as a dict."""
    from diffusers import DDIMScheduler

    path, local = resolve(ref, "pretrained")
    if local and not (Path(path) / "scheduler").is_dir():
        raise EveError(f"weight folder not found: {path}/scheduler (model.pretrained has no scheduler/ folder)")
    cache_only = local or hub_cache_only(path, "pretrained") is not None
    try:
        return dict(DDIMScheduler.load_config(path, subfolder="scheduler", local_files_only=cache_only or None))
    except (OSError, ValueError) as e:
        raise EveError(f"cannot read the noise schedule of model.pretrained ({path}/scheduler): {e}") from None


def load_timm(ref: str, field: str = "dino", **kwargs) -> torch.nn.Module:
    """A timm model from a local timm folder (config.json + model.safetensors) or a timm hub id."""
    import timm

    path, local = resolve(ref, field)
    cached = None if local else hub_cache_only(path, field)  # timm takes no local_files_only: the snapshot's folder
    name = f"local-dir:{path}" if local else f"local-dir:{cached}" if cached else f"hf-hub:{path}"
    try:
        return timm.create_model(name, pretrained=True, **kwargs)
    except (OSError, ValueError, RuntimeError, FileNotFoundError) as e:
        raise EveError(f"cannot load {field_name(field)} from {path}: {str(e).strip().splitlines()[0]}") from None
