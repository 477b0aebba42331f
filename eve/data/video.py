"""Video I/O (PyAV) and resizing. Frames are float tensors [F, 3, H, W] in [-1, 1].

Reads mp4, webm, gif and anything else FFmpeg decodes, or a folder of image frames (sorted by name).
Writes mp4 (H.264) or gif to a temporary name and renames at the end, so a failure never leaves a partial file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor

from eve.errors import EveError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
VIDEO_OUTPUTS = (".mp4", ".gif")
IMAGE_OUTPUTS = (".png", ".jpg", ".jpeg", ".webp")
OUTPUT_SUFFIXES = VIDEO_OUTPUTS + IMAGE_OUTPUTS
DEFAULT_FOLDER_FPS = Fraction(8)


@dataclass
class Video:
    frames: Tensor  # [F, 3, H, W] float in [-1, 1]
    fps: Fraction

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return tuple(self.frames.shape[-2:])


def to_tensor(frames_uint8: np.ndarray) -> Tensor:
    """[F, H, W, 3] uint8 -> [F, 3, H, W] float in [-1, 1]."""
    return torch.from_numpy(frames_uint8).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def to_uint8(frames: Tensor) -> np.ndarray:
    """[F, 3, H, W] in [-1, 1] -> [F, H, W, 3] uint8."""
    x = frames.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def read_video(path: str | os.PathLike, fps: float | None = None) -> Video:
    """Decode a video file or a folder of frames; every failure is an EveError naming the path and the problem.

    `fps` overrides the rate (needed for a folder of frames, which has none; default 8)."""
    p = Path(path)
    if not p.exists():
        raise EveError(f"video not found: {p}")
    if p.is_dir():
        frames, rate = _read_folder(p), DEFAULT_FOLDER_FPS
    elif p.suffix.lower() in IMAGE_SUFFIXES:  # one image: a one-frame video
        frames, rate = _read_image(p)[None], DEFAULT_FOLDER_FPS
    else:
        frames, rate = _read_file(p)
    return Video(to_tensor(frames), Fraction(fps).limit_denominator(1001) if fps else rate)


def _read_file(p: Path) -> tuple[np.ndarray, Fraction]:
    import av

    if p.stat().st_size == 0:
        raise EveError(f"video file is empty: {p}")
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise EveError(f"{p} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except EveError:
        raise
    except av.error.EOFError:
        raise EveError(f"video {p} has no frames (the file ends before any)") from None
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise EveError(f"cannot decode video {p}: {e}") from None
    if not frames:
        raise EveError(f"video {p} has no frames")
    return np.stack(frames), Fraction(rate).limit_denominator(1001) if rate else DEFAULT_FOLDER_FPS


def _read_folder(p: Path) -> np.ndarray:
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EveError(f"folder {p} holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
    frames = []
    for f in files:
        frames.append(_read_image(f))
        if frames[-1].shape != frames[0].shape:
            raise EveError(f"frame {f} is {frames[-1].shape[1]}x{frames[-1].shape[0]}, the first frame is "
                           f"{frames[0].shape[1]}x{frames[0].shape[0]}")
    return np.stack(frames)


def _read_image(f: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise EveError(f"cannot read image {f}: {e}") from None


def is_image_output(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_OUTPUTS


def write_image(path: str | os.PathLike, frame: Tensor) -> Path:
    """One frame [3, H, W] (or [1, 3, H, W]) in [-1, 1] as png/jpg/webp, atomically."""
    from PIL import Image

    p = check_output_path(path)
    if not is_image_output(p):
        raise EveError(f"output {p} is not an image ({', '.join(IMAGE_OUTPUTS)})")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp-{os.getpid()}{p.suffix}")
    try:
        Image.fromarray(to_uint8(frame.reshape(1, *frame.shape[-3:]))[0]).save(tmp, quality=95)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def check_output_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise EveError(f"output {p} must end in {' or '.join(OUTPUT_SUFFIXES)}")
    if p.is_dir():
        raise EveError(f"output {p} is a directory")
    return p


def write_video(path: str | os.PathLike, frames: Tensor, fps: Fraction | float) -> Path:
    """Encode [F, 3, H, W] frames in [-1, 1] at `fps`; atomic (temporary name, then rename)."""
    import av

    p = check_output_path(path)
    if is_image_output(p):
        raise EveError(f"output {p} is an image: write videos as {' or '.join(VIDEO_OUTPUTS)}")
    p.parent.mkdir(parents=True, exist_ok=True)
    data = to_uint8(frames)
    F, H, W, _ = data.shape
    rate = Fraction(fps).limit_denominator(1001)
    tmp = p.with_name(f".{p.stem}.tmp-{os.getpid()}{p.suffix}")
    try:
        gif = p.suffix.lower() == ".gif"
        if gif:  # one palette for the whole clip, no dithering: flat colour stays flat (rgb8 made checkerboards)
            indices, palette, colours = _gif_palette(data)
            argb = np.concatenate([np.full((256, 1), 255, np.uint8), palette], 1)
            if colours > 256:
                logger.info("%s: %d colours, a GIF holds 256 (the nearest are used); write .mp4 to keep them all",
                            p.name, colours)
        with av.open(str(tmp), mode="w") as container:
            if gif:
                stream = container.add_stream("gif", rate=rate)
                stream.pix_fmt = "pal8"
            else:
                stream = container.add_stream("libx264", rate=rate)
                # yuv420p (the playable default) needs even sizes; odd sizes keep full chroma instead.
                stream.pix_fmt = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
                stream.options = {"crf": "18", "preset": "medium"}
            stream.width, stream.height = W, H
            for i in range(F):
                frame = av.VideoFrame.from_ndarray((indices[i], argb), format="pal8") if gif else \
                    av.VideoFrame.from_ndarray(data[i], format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def _gif_palette(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(indices [F, H, W] uint8, palette [256, 3] uint8, colours in the clip): every colour exactly when the clip
    has at most 256, else a median-cut palette of the whole clip, mapped without dithering."""
    F, H, W, _ = data.shape
    packed = data.reshape(-1, 3).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], np.uint32)  # one int a colour
    unique, inverse = np.unique(packed, return_inverse=True)
    palette = np.zeros((256, 3), np.uint8)
    if len(unique) <= 256:
        palette[: len(unique)] = np.stack([unique >> 16, (unique >> 8) & 255, unique & 255], 1)
        return inverse.reshape(F, H, W).astype(np.uint8), palette, len(unique)
    from PIL import Image

    montage = Image.fromarray(data.reshape(F * H, W, 3))
    quantized = montage.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    pal = np.frombuffer(bytes(quantized.getpalette()[: 3 * 256]), np.uint8).reshape(-1, 3)
    palette[: len(pal)] = pal
    return np.asarray(quantized).reshape(F, H, W), palette, len(unique)


def fit_size(height: int, width: int, short_side: int, multiple: int, max_long_side: int | None = None) -> tuple[int, int]:
    """Working size: keep the aspect ratio, scale the short side to `short_side`, cap the long side, and round
    each side to a multiple of `multiple` (at least one multiple). No cropping: the whole frame is edited."""
    scale = short_side / min(height, width)
    if max_long_side is not None:
        scale = min(scale, max_long_side / max(height, width))
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


def resize(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """[F, 3, H, W] -> [F, 3, *size], bicubic with antialiasing (identity when the size already matches)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F_.interpolate(frames.float(), size=size, mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)
