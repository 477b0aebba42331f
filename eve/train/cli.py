"""`python train_fdd.py --config CFG.yaml [key=value ...]`. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("eve.train")

DESCRIPTION = """Distil an EVE editor with Factorized Diffusion Distillation: only a LoRA on the backbone trains.
Each iteration the student edits the clip in fdd.k steps (K-bin), gets SDS from the edit and the video teachers
and, after fdd.sds_only_steps, hinge losses from two discriminators; then the discriminators train on the
teachers' samples. Writes run.out_dir: config.yaml, run.json, metrics.jsonl, samples/, ckpt-NNNNNN/ (resumes
from the newest one when run again)."""

KEYS = {
    "data.manifest": "the FDD dataset (parquet, csv or jsonl)",
    "run.out_dir": "where the run writes",
    "run.steps": "iterations",
    "run.batch_size": "clips per iteration",
    "fdd.k": "student steps with gradients through all of them",
    "fdd.sds_only_steps": "iterations before the adversarial terms start",
    "fdd.use_sds": "false: the w/o SDS ablation",
    "fdd.use_adversarial": "false: the w/o discriminators ablation",
    "fdd.timesteps": "kbin | fixed (the w/o K-bin ablation)",
    "fdd.ema_decay": "EMA of the LoRA (0: off)",
    "optim.lr": "LoRA learning rate",
    "run.mixed_precision": "no | bf16 | fp16",
}


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
    from eve.config import EveConfig, load_config
    from eve.train.loop import train
    from eve.utils.cli import HelpFormatter, config_help, run_cli
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="train_fdd.py", formatter_class=HelpFormatter, description=DESCRIPTION,
                                 epilog=config_help(EveConfig, KEYS, "key=value overrides of the config (main ones)"))
    ap.add_argument("--config", required=True, help="YAML config (see configs/fdd/paper.yaml, configs/tiny.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (below)")
    args = ap.parse_args(argv)
    setup_logging()

    def body() -> None:
        launched_on_missing_gpus()
        last = train(load_config(args.config, args.overrides))
        logger.info("done; last checkpoint: %s", last)

    return run_cli("train_fdd.py", body, "interrupted; resume with the same command")
