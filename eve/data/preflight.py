"""Training's pre-flight (issue 10): before any weight loads, every manifest row's video is decoded to the end and
its frames counted, so a damaged or too-short clip is named in seconds, not at step 23 after a checkpoint.

Counts are cached by file (resolved path, size and modification time) in `$EVE_CACHE/frame_counts.json` (default
`$XDG_CACHE_HOME/eve`, else `~/.cache/eve`), so a re-run, or another run on the same clips, decodes nothing.
"""

from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from eve.errors import EveError
from eve.utils.files import write_text_atomic

logger = logging.getLogger(__name__)


def cache_dir() -> Path:
    if os.environ.get("EVE_CACHE"):
        return Path(os.environ["EVE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eve"


@dataclass(frozen=True)
class BadRow:
    row: int
    video: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row} ({self.video}): {self.reason}"


def count_frames(path: str) -> int:
    """Frames a video decodes to (BadInput naming the file when it cannot be read to its end)."""
    from eve.data.video import VideoReader

    with VideoReader(path) as reader:
        return sum(1 for _ in reader.images())


class FrameCounts:
    """Frame counts by file, cached on disk by (size, mtime). Failures are not cached: a file that could not be read
    (its permissions, a passing error) is tried again next time."""

    def __init__(self, path: Path | None = None):
        self.path = path or cache_dir() / "frame_counts.json"
        try:
            self._known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self._known = {}  # no cache yet, or a damaged one: counted again
        self._dirty = False

    @staticmethod
    def _key(video: str) -> tuple[str, list]:
        p = Path(video).resolve()
        st = p.stat()
        return str(p), [st.st_size, st.st_mtime_ns]

    def get(self, video: str) -> int | str:
        """The frame count, or the reason the file cannot be used (a string)."""
        try:
            key, stamp = self._key(video)
        except OSError as e:
            return f"cannot be read: {e.strerror}"
        hit = self._known.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        try:
            value = count_frames(video)
        except EveError as e:
            return str(e)
        self._known[key] = [stamp, value]
        self._dirty = True
        return value

    def save(self) -> None:
        """Written then renamed; a cache that cannot be written only costs the next run the decoding."""
        if not self._dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.path, json.dumps(self._known))
        except OSError as e:
            logger.warning("could not cache frame counts in %s (%s): the next run decodes the clips again",
                           self.path, e.strerror)


def check_rows(rows: pd.DataFrame, num_frames: int, stride: int, workers: int = 2,
               counts: FrameCounts | None = None) -> list[BadRow]:
    """Rows whose video cannot be decoded, or holds fewer frames than the row's clip takes (start + (num_frames - 1)
    * stride + 1: refused here, so eve.data.clips never pads a clip by repeating its last frame)."""
    counts = counts or FrameCounts()
    videos = list(dict.fromkeys(rows["video"]))
    with ThreadPoolExecutor(max(1, workers)) as pool:
        found = dict(zip(videos, pool.map(counts.get, videos)))
    counts.save()
    bad = []
    for i, (video, start) in enumerate(zip(rows["video"], rows["start"])):
        n = found[video]
        need = int(start) + (num_frames - 1) * stride + 1
        if isinstance(n, str):
            bad.append(BadRow(i, video, n))
        elif n < need:
            bad.append(BadRow(i, video, f"has {n} frames; the clip takes {need} (start {int(start)} + "
                                        f"{num_frames - 1} x data.stride {stride} + 1)"))
    return bad
