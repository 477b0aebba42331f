"""Logging set-up for entry points: INFO to stderr (and to a run's log file when given). Library code only uses
`logging.getLogger(__name__)`."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """INFO on the main process; other data-parallel ranks (RANK set by torchrun / accelerate) only warn."""
    if int(os.environ.get("RANK", "0")) != 0:
        level, log_file = max(level, logging.WARNING), None
    handlers: list[logging.Handler] = [StderrHandler()]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S", handlers=handlers,
                        force=True)
    for noisy in ("httpx", "huggingface_hub", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class StderrHandler(logging.StreamHandler):
    """A StreamHandler on whatever sys.stderr is when a record is written, not when the handler was made: an entry
    point called again under a capture (tests, a caller's redirect) never logs into a closed stream."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; sys.stderr is looked up instead
        pass


def quiet_libraries() -> None:
    """No per-file loading progress bars from transformers (eve shows its own progress where it matters)."""
    import transformers

    transformers.utils.logging.disable_progress_bar()


@contextmanager
def diffusers_log_level(level: int) -> Iterator[None]:
    import diffusers

    before = diffusers.utils.logging.get_verbosity()
    diffusers.utils.logging.set_verbosity(level)
    try:
        yield
    finally:
        diffusers.utils.logging.set_verbosity(before)
