"""`python train_fdd.py --config CFG.yaml [key=value ...]`. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import logging

logger = logging.getLogger("eve.train")


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
        last = train(load_config(args.config, args.overrides))
        logger.info("done; last checkpoint: %s", last)

    return run_cli("train_fdd.py", body, "interrupted; resume with the same command")
