"""Video I/O (PyAV) and resizing. Frames are float tensors [F, 3, H, W] in [-1, 1].

Reads mp4, webm, gif and anything else FFmpeg decodes, or a folder of image frames (sorted by name).
Writes mp4 (H.264) or gif to a temporary name and renames at the end, so a failure never leaves a partial file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F_
from torch import Tensor

from eve.errors import BadInput, EveError

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
    """Decode a whole video file or folder of frames into memory (short clips; `VideoReader` streams long ones);
    every failure is an EveError naming the path and the problem.

    `fps` overrides the rate (needed for a folder of frames, which has none; default 8)."""
    with VideoReader(path, fps) as reader:
        frames = [frame for frame, _ in reader]
    return Video(torch.stack(frames), reader.fps)


class VideoReader:
    """A video file, a folder of frames or one image, read one frame at a time, eve's one decoding path: iterating
    yields (frame [3, H, W] float in [-1, 1], pts) in presentation order, `images()` (uint8 [H, W, 3], pts),
    optionally scaled; pts in `time_base` units (the source's own timestamps, so a variable-frame-rate file keeps
    its timing; None for folders and images, and when `fps` overrides the rate). Opening checks what it cheaply can
    (missing, empty, not a video, no video stream); a failure while decoding is raised from the iteration. Either
    is a BadInput naming the file."""

    def __init__(self, path: str | os.PathLike, fps: float | None = None):
        p = Path(path)
        if not p.exists():
            raise BadInput(f"video not found: {p}")
        self.path = p
        self._container = None
        self._files: list[Path] | None = None
        self.time_base: Fraction | None = None
        self.frame_count: int | None = None  # when the source says (a file's header may not)
        if p.is_dir():
            self._files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise BadInput(f"folder {p} holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
            rate = DEFAULT_FOLDER_FPS
        elif p.suffix.lower() in IMAGE_SUFFIXES:  # one image: a one-frame video
            self._files, rate = [p], DEFAULT_FOLDER_FPS
        else:
            rate = self._open(p)
        if self._files is not None:
            self.frame_count = len(self._files)
        self.fps = Fraction(fps).limit_denominator(1001) if fps else rate
        if fps:
            self.time_base = None  # the given rate replaces the file's timing

    def _open(self, p: Path) -> Fraction:
        import av

        if p.stat().st_size == 0:
            raise BadInput(f"video file is empty: {p}")
        try:
            self._container = av.open(str(p))
            if not self._container.streams.video:
                raise BadInput(f"{p} has no video stream")
            stream = self._container.streams.video[0]
        except EveError:
            self.close()
            raise
        except av.error.EOFError:
            self.close()
            raise BadInput(f"video {p} has no frames (the file ends before any)") from None
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
            self.close()
            raise BadInput(f"cannot decode video {p}: {e}") from None
        stream.thread_type = "AUTO"
        self.time_base = stream.time_base
        self.frame_count = stream.frames or None
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return Fraction(rate).limit_denominator(1001) if rate else DEFAULT_FOLDER_FPS

    def __iter__(self) -> Iterator[tuple[Tensor, int | None]]:
        for image, pts in self.images():
            yield to_tensor(image[None])[0], pts

    def images(self, width: int | None = None, short_side: int | None = None) -> Iterator[tuple[np.ndarray, int | None]]:
        """(uint8 [H, W, 3], pts) frame by frame, scaled to `width` (aspect kept), or down so the short side is at
        most `short_side` (sides even, so H.264 keeps its playable 4:2:0); area-averaged (OpenCV)."""
        for image, pts in self._iter_images() if self._files is not None else self._iter_file():
            yield scaled(image, width, short_side), pts

    def _iter_images(self) -> Iterator[tuple[np.ndarray, None]]:
        shape = None
        for f in self._files:
            frame = _read_image(f)
            if shape is not None and frame.shape != shape:
                raise BadInput(f"frame {f} is {frame.shape[1]}x{frame.shape[0]}, the first frame is "
                               f"{shape[1]}x{shape[0]}")
            shape = frame.shape
            yield frame, None

    def _iter_file(self) -> Iterator[tuple[np.ndarray, int | None]]:
        import av

        p, stream = self.path, self._container.streams.video[0]
        count, first_pts = 0, None
        try:
            for frame in self._container.decode(stream):
                pts = None
                if self.time_base is not None and frame.pts is not None:
                    first_pts = frame.pts if first_pts is None else first_pts
                    pts = frame.pts - first_pts  # the timeline starts at 0
                count += 1
                yield frame.to_ndarray(format="rgb24"), pts
        except av.error.EOFError:
            if not count:
                raise BadInput(f"video {p} has no frames (the file ends before any)") from None
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as e:
            raise BadInput(f"cannot decode video {p}: {e}") from None
        if not count:
            raise BadInput(f"video {p} has no frames")

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_image(f: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            return np.array(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise BadInput(f"cannot read image {f}: {e}") from None


def scaled(image: np.ndarray, width: int | None = None, short_side: int | None = None) -> np.ndarray:
    """[H, W, 3] uint8 scaled to `width` (aspect kept), or down so the short side is at most `short_side` (sides
    even); as it is otherwise. Area-averaged."""
    h, w = image.shape[:2]
    if width:
        size = (width, max(1, round(h * width / w)))
    elif short_side and min(h, w) > short_side:
        size = tuple(max(2, round(n * short_side / min(h, w) / 2) * 2) for n in (w, h))
    else:
        return image
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


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
    with VideoWriter(path, fps) as writer:
        writer.write(frames)
    return writer.path


class VideoWriter:
    """Encode frames as they come: mp4 (H.264) or gif, written under a temporary name and renamed when the `with`
    block ends without an error (an error removes it: never a partial output).

    `write(frames [n, 3, H, W] in [-1, 1], pts)` encodes them at once, so memory does not grow with the clip; pts
    (in `time_base` units, e.g. a VideoReader's) keeps a source's timing, variable frame rate included; without
    them frames are evenly spaced at `fps`. A GIF is held (as palette indices) until the end, as its one palette
    for the whole clip needs every frame; it is evenly spaced at `fps` (GIF timing is in 1/100 s)."""

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, time_base: Fraction | None = None):
        p = check_output_path(path)
        if is_image_output(p):
            raise EveError(f"output {p} is an image: write videos as {' or '.join(VIDEO_OUTPUTS)}")
        self.path = p
        self.rate = Fraction(fps).limit_denominator(1001)
        self.time_base = time_base
        self.gif = p.suffix.lower() == ".gif"
        self._tmp = p.with_name(f".{p.stem}.tmp-{os.getpid()}{p.suffix}")
        self._container = self._stream = None
        self._held: list[np.ndarray] = []  # a GIF's frames
        self._last_pts: int | None = None
        self.frames_written = 0

    def __enter__(self) -> VideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, frames: Tensor, pts: list[int | None] | None = None) -> None:
        data = to_uint8(frames)
        if self.gif:
            self._held.extend(data)
            return
        for i, image in enumerate(data):
            if self._container is None:
                self._start(*image.shape[:2])
            frame = av_frame(image)
            self._stamp(frame, pts[i] if pts is not None else None)
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def _start(self, H: int, W: int) -> None:
        import av

        self._container = av.open(str(self._tmp), mode="w")
        stream = self._container.add_stream("libx264", rate=self.rate)
        # yuv420p (the playable default) needs even sizes; odd sizes keep full chroma instead.
        stream.pix_fmt = "yuv420p" if H % 2 == 0 and W % 2 == 0 else "yuv444p"
        # x264's macroblock-tree rate control gave other bytes for the same frames when encoded outside the main
        # thread (data preparation's workers); without it an export is byte-reproducible whatever the workers
        stream.options = {"crf": "18", "preset": "medium", "x264-params": "mbtree=0"}
        stream.width, stream.height = W, H
        if self.time_base is not None:
            stream.codec_context.time_base = self.time_base
        self._stream = stream

    def _stamp(self, frame, pts: int | None) -> None:
        """The source's timestamp, when it has one and it moves forward (a repeated or missing one gets the next
        frame's slot at the nominal rate); else none, and the encoder spaces frames evenly at `fps`."""
        if self.time_base is None:
            return
        step = max(1, round(1 / (self.rate * self.time_base)))
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = 0 if self._last_pts is None else self._last_pts + step
        frame.pts, frame.time_base = pts, self.time_base
        self._last_pts = pts

    def _finish(self) -> None:
        if self.gif:
            self._write_gif()
        elif self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        if not self.frames_written:
            raise EveError(f"no frames to write to {self.path}")
        os.replace(self._tmp, self.path)

    def _write_gif(self) -> None:
        import av

        if not self._held:
            return
        data = np.stack(self._held)
        self._held = []
        F, H, W, _ = data.shape
        # one palette for the whole clip, no dithering: flat colour stays flat (rgb8 made checkerboards)
        indices, palette, colours = _gif_palette(data)
        argb = np.concatenate([np.full((256, 1), 255, np.uint8), palette], 1)
        if colours > 256:
            logger.info("%s: %d colours, a GIF holds 256 (the nearest are used); write .mp4 to keep them all",
                        self.path.name, colours)
        with av.open(str(self._tmp), mode="w") as container:
            stream = container.add_stream("gif", rate=self.rate)
            stream.pix_fmt = "pal8"
            stream.width, stream.height = W, H
            for i in range(F):
                for packet in stream.encode(av.VideoFrame.from_ndarray((indices[i], argb), format="pal8")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        self.frames_written = F

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            if self._container is not None:
                try:
                    self._container.close()
                except Exception:  # noqa: BLE001 (already failing: the first error is the one to report)
                    pass
            self._tmp.unlink(missing_ok=True)


def av_frame(image: np.ndarray):
    """One [H, W, 3] uint8 RGB image as a PyAV frame (the encoder converts it to its pixel format)."""
    import av

    return av.VideoFrame.from_ndarray(image, format="rgb24")


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
