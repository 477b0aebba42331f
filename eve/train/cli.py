"""`python train_fdd.py --config CFG.yaml [key=value ...]`. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("eve.train")


def launched_on_missing_gpus() -> None:
    """`accelerate launch` with a GPU launch config on a machine without CUDA: the first process says so in one
    line (exit 2), the others leave quietly, instead of every process printing the same traceback."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world < 2 or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return
    import torch

    if torch.cuda.is_available():
        return
    if int(os.environ.get("RANK", "0")) != 0:
        sys.exit(0)
    from eve.errors import EveError

    raise EveError(f"launched as {world} GPU processes, but this machine has no CUDA GPU: run python train_fdd.py "
                   "directly, or give accelerate launch --cpu")


def main(argv: list[str] | None = None) -> int:
    from eve.config import load_config
    from eve.train.loop import train
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="train_fdd.py", description="Factorized Diffusion Distillation of an EVE editor.",
                                 epilog="key=value arguments override the config, e.g. run.steps=100 fdd.k=2.")
    ap.add_argument("--config", required=True, help="YAML config (see configs/fdd/paper.yaml, configs/tiny.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        launched_on_missing_gpus()
        last = train(load_config(args.config, args.overrides))
        logger.info("done; last checkpoint: %s", last)

    return run_cli("train_fdd.py", body, "interrupted; resume with the same command")
