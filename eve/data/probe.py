"""Stage 1, probe: what each input file is (duration, fps, size, codec, frames). An unreadable file is a row with
its reason, never an exception."""

from __future__ import annotations

from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif", ".mpg", ".mpeg", ".ts")


def list_videos(source: str) -> list[str]:
    """A folder (recursively, by suffix; a folder named like a video is listed too, so the probe reports it rather
    than skipping it without a word) or a text file with one path per line (relative to the file)."""
    p = Path(source)
    if p.is_dir():
        return sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in VIDEO_SUFFIXES)
    if p.is_file():
        lines = [line.strip() for line in p.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return [str(q if Path(q).is_absolute() else (p.parent / q)) for q in lines]
    raise FileNotFoundError(source)


def probe(path: str) -> dict:
    import av

    row = {"video": path, "ok": False, "error": "", "duration": 0.0, "fps": 0.0, "width": 0, "height": 0,
           "codec": "", "frames": 0}
    p = Path(path)
    if p.is_dir():
        return row | {"error": "a folder named like a video, not a video file"}
    if not p.is_file():
        return row | {"error": "file not found"}
    if p.stat().st_size == 0:
        return row | {"error": "empty file"}
    try:
        with av.open(path) as c:
            if not c.streams.video:
                return row | {"error": "no video stream"}
            s = c.streams.video[0]
            frames = sum(1 for _ in c.demux(s) if _.size)  # packets: cheap, no decoding
            fps = float(s.average_rate or s.guessed_rate or 0)
            duration = float(s.duration * s.time_base) if s.duration else (frames / fps if fps else 0.0)
            row |= {"fps": fps, "width": s.codec_context.width, "height": s.codec_context.height,
                    "codec": s.codec_context.name, "frames": frames, "duration": duration}
    except Exception as e:  # FFmpeg raises many error types for bad files; all are reasons, not crashes
        return row | {"error": " ".join(str(e).split())[:200]}
    if row["frames"] == 0:
        return row | {"error": "no frames"}
    return row | {"ok": True}
