"""Writing files so that nothing is ever half-written, and checking an output folder before any work."""

from __future__ import annotations

import hashlib
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


INDEX_FILES = ("model_index.json",)  # a pipeline's index beside the weights names them, it holds none


def weights_fingerprint(ref: str | None) -> object:
    """Local folder: each file's name, size and a hash of its first and last MiB (content, not mtimes: rewriting the
    same weights is the same run, and hashing gigabytes at every start would cost seconds); hub id: the id."""
    if not ref:
        return None
    p = Path(ref)
    if not p.is_dir():
        return ref
    return sorted((str(f.relative_to(p)), f.stat().st_size, ends_digest(f)) for f in p.rglob("*")
                  if f.is_file() and f.name not in INDEX_FILES)


def ends_digest(path: Path, chunk: int = 1 << 20) -> str:
    """A hash of a file's first and last MiB: its content, cheaply, for files of gigabytes."""
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        h.update(fh.read(chunk))
        if path.stat().st_size > chunk:
            fh.seek(-min(chunk, path.stat().st_size - chunk), os.SEEK_END)
            h.update(fh.read())
    return h.hexdigest()[:16]
