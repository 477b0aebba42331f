"""The clip an editor reads, at the working size, as far as it has been asked for (issue 10: memory that does not
grow with the clip).

A `Clip` is either a whole tensor [B, N, 3, h, w] already at the working size (`edit_windows`: the world's
evaluation, the benches) or a stream of source-size frames [3, H, W] for one clip (`edit_stream`: edit.py reading a
file, and the Python API's call, which streams the clip it holds):
each streamed frame is resized on arrival and kept only until the editor `release`s it, so a stream holds at most
two windows' frames (2 x model.num_frames - overlap, at the working size) whatever the clip's length or source
resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import Tensor

from eve.data.video import resize


class Clip:
    """Frames [start, stop) of one or more clips on demand. `fill(n)` reads up to frame n and says how many exist
    (fewer only at the clip's end); `get(start, stop)` gives [B, stop - start, 3, h, w] on `device`."""

    def __init__(self, frames: Tensor | None = None, *, stream: Iterable[Tensor] | None = None,
                 size: tuple[int, int] | None = None, device=None):
        if (frames is None) == (stream is None):
            raise ValueError("a Clip is a tensor or a stream, exactly one of them")
        if stream is not None and size is None:
            raise ValueError("a streamed Clip needs its working size")
        self._tensor = frames
        self._stream: Iterator[Tensor] | None = iter(stream) if stream is not None else None
        self._kept: dict[int, Tensor] = {}
        self._read = 0
        self.size = size
        self.device = device if device is not None else (frames.device if frames is not None else "cpu")

    def fill(self, n: int) -> int:
        """Read up to frame n; the frames that exist, min(n, clip length)."""
        if self._tensor is not None:
            return min(n, self._tensor.shape[1])
        while self._read < n and self._stream is not None:
            frame = next(self._stream, None)
            if frame is None:
                self._stream = None  # ended
                break
            self._kept[self._read] = resize(frame[None], self.size)[0]
            self._read += 1
        return min(n, self._read)

    def get(self, start: int, stop: int) -> Tensor:
        """Frames [start, stop) as [B, F, 3, h, w] on the device (read first with `fill`)."""
        if self._tensor is not None:
            return self._tensor[:, start:stop].to(self.device)
        missing = [i for i in range(start, stop) if i not in self._kept]
        if missing:
            raise IndexError(f"frames {missing[0]}..{missing[-1]} were released or not read yet")
        return torch.stack([self._kept[i] for i in range(start, stop)])[None].to(self.device)

    def release(self, before: int) -> None:
        """Forget frames before `before`: the editor never goes back to them."""
        for i in [i for i in self._kept if i < before]:
            del self._kept[i]

    @property
    def held(self) -> int:
        """Streamed frames held now (what `release` bounds)."""
        return len(self._kept)
