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
        length: frames per window, the video adapter's frame count (clips shorter than it get one window).
        overlap: already-edited frames each later window starts with, 1 <= overlap < length.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if length < 2:
        raise ValueError(f"window length must be >= 2, got {length}")
    if not 1 <= overlap < length:
        raise ValueError(f"window overlap must be in [1, {length - 1}], got {overlap}")
    if num_frames <= length:
        return [Window(0, num_frames, 1)]
    windows = [Window(0, length, 1)]
    done = length  # frames [0, done) are edited
    while done < num_frames:
        start = min(done - overlap, num_frames - length)
        windows.append(Window(start, start + length, done - start))
        done = start + length
    return windows
