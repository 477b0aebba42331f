"""Stage 4, captions: the input caption of each clip, from a file the user gives or from a local image-to-text
model run on the clip's middle frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from eve.errors import EveError


def captions_from_file(path: str) -> dict[str, str]:
    """{clip_id or video path or video file name: caption} from a csv / jsonl with a `caption` column and a
    `clip_id` or `video` column."""
    from eve.data.manifest import read_table

    df = read_table(path)
    if "caption" not in df.columns or not ({"clip_id", "video"} & set(df.columns)):
        raise EveError(f"captions file {path} needs a caption column and a clip_id or video column")
    out = {}
    for _, r in df.iterrows():
        key = str(r["clip_id"]) if "clip_id" in df.columns and pd.notna(r.get("clip_id")) else str(r["video"])
        out[key] = str(r["caption"]).strip()
        if "video" in df.columns:
            out.setdefault(Path(str(r["video"])).name, str(r["caption"]).strip())
    return out


def lookup(table: dict[str, str], clip_id: str, video: str) -> str | None:
    for key in (clip_id, video, Path(video).name):
        if key in table and table[key]:
            return table[key]
    return None


class ImageCaptioner:
    """A local transformers image-to-text model (BLIP, GIT, ... or any `image-text-to-text` VLM)."""

    def __init__(self, model_dir: str):
        from transformers import pipeline

        try:
            self.pipe = pipeline("image-to-text", model=model_dir, local_files_only=True)
        except Exception as e:  # pipeline construction raises many types for a wrong folder
            raise EveError(f"cannot load caption_model {model_dir}: {' '.join(str(e).split())[:200]}") from None

    def __call__(self, frame: np.ndarray) -> str:
        from PIL import Image

        out = self.pipe(Image.fromarray(frame), max_new_tokens=40)
        return str(out[0]["generated_text"]).strip() if out else ""


def make_captioner(ref: str, field: str = "caption_model", *, check_only: bool = False):
    """A frame captioner: a local image-to-text model folder (ImageCaptioner), or `module:attr` naming a class or
    callable frame -> caption (a world's own parser). `check_only`: only check that it exists (nothing loads)."""
    from eve.data.instructions import load_entry_point

    folder = Path(ref).expanduser()
    if folder.is_dir():
        return None if check_only else ImageCaptioner(str(folder))
    if ":" in ref:
        return load_entry_point(ref, field, instantiate=not check_only)
    raise EveError(f"{field}={ref!r} is neither a local model folder nor a module:attr captioner")
