"""Large buffers go back to the system when freed (issue 10: memory flat against a video's length).

Decoding a 4K video frame by frame allocates a 25 MB array per frame and frees it a moment later, while small
arrays (the scaled-down frames a stage keeps) are allocated in between. glibc's malloc raises its mmap threshold
after the first large free (up to 32 MB), so the later 25 MB buffers come from the heap, where the small arrays
pin them: data preparation's split of a 60-second 4K clip grew to 7.9 GB doing nothing but that (0.6 GB with this
fix; `bench/stream_memory.py`). Fixing the threshold at 1 MB keeps every buffer of that size and above in its
own mapping, returned on free, at the cost of a page fault per first touch (about 5 ms per 4K frame here).

The entry points that stream video call it (edit.py, python -m eve.data), not `import eve`: a library user's or a
CPU training's allocations stay as glibc makes them. glibc only: elsewhere, or when the user set
MALLOC_MMAP_THRESHOLD_, nothing changes; EVE_MMAP_THRESHOLD=off leaves malloc alone.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
THRESHOLD = 1 << 20


def bound_heap() -> bool:
    """Fix glibc's mmap threshold at 1 MB; whether it was set."""
    if os.environ.get("EVE_MMAP_THRESHOLD", "").lower() == "off" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): their allocators do not grow this way, or are not ours to tune
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD))
