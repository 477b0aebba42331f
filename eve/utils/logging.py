"""Logging set-up for entry points: INFO to stderr (and to a run's log file when given). Library code only uses
`logging.getLogger(__name__)`."""

from __future__ import annotations

import logging
import os
import sys


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """INFO on the main process; other data-parallel ranks (RANK set by torchrun / accelerate) only warn."""
    if int(os.environ.get("RANK", "0")) != 0:
        level, log_file = max(level, logging.WARNING), None
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", handlers=handlers,
                        force=True)
    for noisy in ("httpx", "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
