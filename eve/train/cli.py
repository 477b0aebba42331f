"""`python train_fdd.py --config CFG.yaml [key=value ...]`. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import logging
import sys

from eve.errors import EveError

logger = logging.getLogger("eve.train")


def main(argv: list[str] | None = None) -> int:
    from eve.config import load_config
    from eve.train.loop import train
    from eve.utils.logging import setup_logging

    ap = argparse.ArgumentParser(prog="train_fdd.py", description="Factorized Diffusion Distillation of an EVE editor.",
                                 epilog="key=value arguments override the config, e.g. run.steps=100 fdd.k=2.")
    ap.add_argument("--config", required=True, help="YAML config (see configs/fdd/paper.yaml, configs/tiny.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    args = ap.parse_args(argv)
    setup_logging()
    try:
        cfg = load_config(args.config, args.overrides)
        last = train(cfg)
    except EveError as e:
        print(f"train_fdd.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("train_fdd.py: interrupted; resume with the same command", file=sys.stderr)
        return 130
    logger.info("done; last checkpoint: %s", last)
    return 0
