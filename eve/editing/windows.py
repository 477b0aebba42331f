"""Sliding windows over a long clip (FDD §4 "Training Details", after InsV2V; paper-notes OQ-24). Pure.

Window w spans frames [start, stop). Its first `known` frames were already edited (frame 0 by the edit teacher,
later ones by the previous window) and condition the video adapter; it writes only frames [start + known, stop).
So frame 0 and the written ranges of all windows partition the clip: every frame is written exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    start: int
    stop: int
    known: int  # leading frames of the window that are already edited and condition it

    @property
    def new(self) -> range:
        """Frames this window writes."""
        return range(self.start + self.known, self.stop)


def window_slices(num_frames: int, length: int, overlap: int = 1) -> list[Window]:
    """Windows of `length` frames overlapping by `overlap`; the last one is moved back to end at the clip's end
    (overlapping more) so every window has the model's frame count.

    Args:
        num_frames: frames in the clip (>= 1).
        length: frames per window, the video adapter's frame count (clips shorter than it get one window; a
            one-frame clip, frame 0 alone, needs none).
        overlap: already-edited frames each later window starts with, 1 <= overlap < length.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    windows, done = [], 1
    while (win := next_window(done, num_frames, length, overlap)) is not None:
        windows.append(win)
        done = win.stop
    return windows


def reach(done: int, length: int, overlap: int) -> int:
    """How many frames of the clip must be known (read) to place the window after frames [0, done) are edited: a
    stream reads this far, then calls `next_window` with what it found."""
    return max(0, done - overlap) + length


def next_window(done: int, available: int, length: int, overlap: int) -> Window | None:
    """The window after frames [0, done) are edited, or None when the clip has no frame left. `available`: frames
    that exist up to `reach(done, ...)` (fewer only when the clip ends before it), so a stream of unknown length
    places its windows exactly as `window_slices` does for the whole clip."""
    if length < 2:
        raise ValueError(f"window length must be >= 2, got {length}")
    if not 1 <= overlap < length:
        raise ValueError(f"window overlap must be in [1, {length - 1}], got {overlap}")
    if available <= done:
        return None
    start = max(0, min(done - overlap, available - length))
    return Window(start, min(start + length, available), done - start)
