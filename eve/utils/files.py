"""Writing files so that nothing is ever half-written, and checking an output folder before any work."""

from __future__ import annotations

import os
from pathlib import Path

from eve.errors import EveError


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write text under a temporary name beside `path`, then rename: a reader sees the old file or the new one."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def check_writable(path: str | os.PathLike, field: str) -> None:
    """The folder can be made and written: no file on its path, its nearest existing folder writable. `field` names
    the setting or flag in the one-line error."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise EveError(f"{field}={path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise EveError(f"{field}={path}: {parent} is not writable")
            return
