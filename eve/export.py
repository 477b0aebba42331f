"""`python -m eve.export CHECKPOINT [--out FOLDER] [--fp16]`: a diffusers LoRA from any eve checkpoint.

Writes FOLDER/pytorch_lora_weights.safetensors (default FOLDER: the checkpoint's own folder, where
`pipe.load_lora_weights(folder)` looks first) with diffusers' own `save_lora_weights`: keys `unet.*` and the
LoraConfig (rank, alpha, layers) as its adapter metadata, so stock `StableDiffusionPipeline` / `AnimateDiffPipeline`
apply it as eve's student does. No model weight is loaded. Checkpoints written since issue 11 already hold one.

CHECKPOINT may also be a run folder (it holds metrics.jsonl): its checkpoint with the best validation score
(run.eval_every; eve.train.validation.best_checkpoint) is taken. With --out elsewhere, FOLDER also gets the eve file
(student_lora.safetensors, its config's weight paths made relative to FOLDER, so `edit.py --checkpoint FOLDER` works
there) and chosen.json (the checkpoint and its validation row); --fp16 halves the tensors (a LoRA to commit).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("eve.export")


def export(checkpoint: str, out: str | None = None, fp16: bool = False) -> Path:
    import json

    import torch
    from peft import LoraConfig

    from eve.errors import EveError
    from eve.models.lora import atomic_save, inspect_lora, read_lora, write_diffusers_lora
    from eve.train.validation import chosen_checkpoint
    from eve.utils.files import write_text_atomic

    ckpt, row = chosen_checkpoint(checkpoint)  # a run folder: its best-validated checkpoint
    info = inspect_lora(ckpt)
    if info.format != "eve":
        raise EveError(f"{info.path} is not an eve checkpoint (it is in {info.format} format: diffusers reads it)")
    tensors, meta = read_lora(info.path)
    if fp16:
        tensors = {k: v.to(torch.float16) for k, v in tensors.items()}
    folder = Path(out or info.path.parent)
    if fp16 and folder.resolve() == info.path.parent.resolve():
        raise EveError("--fp16 writes a half-precision copy: give --out, a folder other than the checkpoint's")
    if folder.resolve() != info.path.parent.resolve():  # the eve file too, portable from its new folder
        meta = dict(meta)
        if "config" in meta:
            from eve.config import config_from_text, portable_yaml

            meta["config"] = portable_yaml(config_from_text(meta["config"], str(info.path), base=info.path.parent),
                                           folder)
        atomic_save(tensors, folder / info.path.name, meta)
        write_text_atomic(folder / "chosen.json", json.dumps({"checkpoint": str(info.path.parent)}
                                                             | ({"validation": row} if row else {}), indent=1))
    modules = sorted({k.split(".lora_")[0] for k in tensors})
    config = LoraConfig(r=int(meta["lora_rank"]), lora_alpha=float(meta["lora_alpha"]), target_modules=modules)
    path = write_diffusers_lora(tensors, config.to_dict(), folder)
    logger.info("wrote %s: rank %s, alpha %s, %d layers%s", path, meta["lora_rank"], meta["lora_alpha"],
                len(modules), f", step {meta['step']}" if "step" in meta else "")
    return path


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    doc = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(prog="python -m eve.export", description=doc[0].split(": ", 1)[1], epilog=doc[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a ckpt-NNNNNN folder or its student_lora.safetensors, or a run folder")
    ap.add_argument("--out", help="folder to write pytorch_lora_weights.safetensors to (default: the checkpoint's)")
    ap.add_argument("--fp16", action="store_true", help="write the tensors in float16")
    args = ap.parse_args(argv)
    setup_logging()
    return run_cli("eve.export", lambda: export(args.checkpoint, args.out, args.fp16), "interrupted; nothing written")


if __name__ == "__main__":
    sys.exit(main())
