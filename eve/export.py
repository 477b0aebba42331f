"""`python -m eve.export CHECKPOINT [--out FOLDER]`: a diffusers LoRA from any eve checkpoint.

Writes FOLDER/pytorch_lora_weights.safetensors (default FOLDER: the checkpoint's own folder, where
`pipe.load_lora_weights(folder)` looks first) with diffusers' own `save_lora_weights`: keys `unet.*` and the
LoraConfig (rank, alpha, layers) as its adapter metadata, so stock `StableDiffusionPipeline` / `AnimateDiffPipeline`
apply it as eve's student does. No model weight is loaded. Checkpoints written since issue 11 already hold one.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("eve.export")


def export(checkpoint: str, out: str | None = None) -> Path:
    from peft import LoraConfig

    from eve.errors import EveError
    from eve.models.lora import inspect_lora, read_lora, write_diffusers_lora

    info = inspect_lora(checkpoint)
    if info.format != "eve":
        raise EveError(f"{info.path} is not an eve checkpoint (it is in {info.format} format: diffusers reads it)")
    tensors, meta = read_lora(info.path)
    modules = sorted({k.split(".lora_")[0] for k in tensors})
    config = LoraConfig(r=int(meta["lora_rank"]), lora_alpha=float(meta["lora_alpha"]), target_modules=modules)
    path = write_diffusers_lora(tensors, config.to_dict(), out or info.path.parent)
    logger.info("wrote %s: rank %s, alpha %s, %d layers%s", path, meta["lora_rank"], meta["lora_alpha"],
                len(modules), f", step {meta['step']}" if "step" in meta else "")
    return path


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    doc = __doc__.split("\n\n", 1)
    ap = argparse.ArgumentParser(prog="python -m eve.export", description=doc[0].split(": ", 1)[1], epilog=doc[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a ckpt-NNNNNN folder or its student_lora.safetensors")
    ap.add_argument("--out", help="folder to write pytorch_lora_weights.safetensors to (default: the checkpoint's)")
    args = ap.parse_args(argv)
    setup_logging()
    return run_cli("eve.export", lambda: export(args.checkpoint, args.out), "interrupted; nothing written")


if __name__ == "__main__":
    sys.exit(main())
