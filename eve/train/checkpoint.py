"""Training checkpoints: safetensors only, written to a temporary folder and renamed, resumable after a kill.

    out_dir/ckpt-000500/
        student_lora.safetensors      LoRA (peft keys); metadata: resolved config (weight paths relative to this
                                      folder), step, rank, alpha, targets (its EMA when fdd.ema_decay > 0)
        pytorch_lora_weights.safetensors  the same LoRA in diffusers' format, where `pipe.load_lora_weights(folder)`
                                      looks first
        discriminator.safetensors     trainable discriminator heads ("edit.*", "video.*")
        train_state.safetensors       optimizer tensors ("opt_g/<param>/<name>"), RNG states ("rng/<name>") and,
                                      with an EMA, the trained LoRA itself ("student/<param name>")
        train_state.json              step, data cursor, optimizer param groups

A folder only gets its final name once everything in it was written, so the newest `ckpt-*` is always complete.
Frozen weights are never saved: the config names them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from eve.errors import EveError

CKPT = re.compile(r"^ckpt-(\d+)$")


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, Tensor], dict]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, state in sd["state"].items():
        for name, v in state.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}/{pid}/{name}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{pid}/{name}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Tensor], meta: dict, prefix: str) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith(prefix + "/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = v
    for key, v in meta.get("scalars", {}).items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def folder(out_dir: str | os.PathLike, step: int) -> Path:
    """Where the checkpoint of `step` lives once written."""
    return Path(out_dir) / f"ckpt-{step:06d}"


def save(
    out_dir: str | os.PathLike,
    step: int,
    *,
    write_lora,
    disc_state: dict[str, Tensor],
    optimizers: dict[str, torch.optim.Optimizer],
    rng: dict[str, Tensor],
    state: dict,
    keep_last: int,
    tensors: dict[str, Tensor] | None = None,
) -> Path:
    """Write ckpt-{step:06d} atomically; `write_lora(folder)` writes the LoRA files into the folder; `tensors`
    (already prefixed) go into train_state.safetensors beside the optimizer and RNG states."""
    out = Path(out_dir)
    final = folder(out, step)
    tmp = out / f".ckpt-{step:06d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write_lora(tmp)
        if disc_state:
            save_file({k: v.detach().cpu().contiguous() for k, v in disc_state.items()}, str(tmp / "discriminator.safetensors"))
        flat, groups = {k: v.detach().cpu().contiguous() for k, v in (tensors or {}).items()}, {}
        for name, opt in optimizers.items():
            t, meta = flatten_optimizer(opt, name)
            flat.update(t)
            groups[name] = meta
        flat.update({f"rng/{k}": v for k, v in rng.items()})
        save_file(flat, str(tmp / "train_state.safetensors"))
        (tmp / "train_state.json").write_text(json.dumps({"step": step, "optimizers": groups, **state}, indent=1))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except (OSError, SafetensorError) as e:  # a full disk, a quota, permissions: one line, the newest complete
        # checkpoint untouched
        newest = checkpoints(out)
        raise EveError(f"cannot write checkpoint {final}: {getattr(e, 'strerror', None) or e}; the newest complete "
                       f"checkpoint ({newest[-1].name if newest else 'none yet'}) is intact: run the same command to "
                       "resume once it can be written") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune(out, keep_last)
    return final


def remove_partial(out_dir: str | os.PathLike) -> list[Path]:
    """Delete the temporary folders of checkpoint writes that never finished (`save` renames a complete one into
    place, so what is left under a temporary name was cut off); returns them."""
    stale = sorted(Path(out_dir).glob(".ckpt-*.tmp-*"))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def checkpoints(out_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints, oldest first."""
    out = Path(out_dir)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := CKPT.match(p.name)) and (p / "train_state.json").is_file()]
    return [p for _, p in sorted(found)]


def prune(out_dir: Path, keep_last: int) -> None:
    if keep_last > 0:
        for p in checkpoints(out_dir)[:-keep_last]:
            shutil.rmtree(p, ignore_errors=True)


def find_resume(out_dir: str | os.PathLike, resume: str) -> Path | None:
    """The checkpoint to resume from: "auto" = newest in out_dir (or none), "never", or a folder."""
    if resume == "never":
        return None
    if resume == "auto":
        found = checkpoints(out_dir)
        return found[-1] if found else None
    p = Path(resume)
    if not (p / "train_state.json").is_file():
        raise EveError(f"run.resume={resume}: not a complete checkpoint folder (no train_state.json)")
    return p


def load_state(ckpt: Path) -> tuple[dict, dict[str, Tensor]]:
    """(train_state.json contents, train_state tensors)."""
    return json.loads((ckpt / "train_state.json").read_text()), load_file(str(ckpt / "train_state.safetensors"))
