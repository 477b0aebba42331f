"""The FDD dataset manifest: one schema, one module, validated (paper §4 "Unsupervised Dataset").

A manifest is a table (parquet, csv or jsonl) with one row per data point y = (c_out, c_instruct, c_vid, task):

    video        path of the clip's video file or frame folder, relative to the manifest's folder or absolute
    caption      output caption c_out (what the edited clip shows); the backbone sees it
    instruction  edit instruction c_instruct; the edit adapter sees it
    task         one of eve.tasks.TASKS

Optional columns: `start` (first frame of the clip, default 0), `input_caption` (the source clip's caption), `id`.
The data-preparation stages write exactly this; train_fdd.py reads it through `read_manifest`.

LoRA alignment (paper §4.4; kind="captions") has no images: a row is (input_caption, instruction, caption, task),
the input image being sampled from the backbone with the user's LoRA; `python -m eve.data.triplets` writes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from eve.errors import EveError
from eve.tasks import TASKS

REQUIRED = ("video", "caption", "instruction", "task")
CAPTIONS_REQUIRED = ("input_caption", "caption", "instruction", "task")  # kind="captions" (LoRA alignment)
OPTIONAL = ("start", "input_caption", "id")


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise EveError(f"manifest not found: {p}")
    try:
        if p.suffix == ".parquet":
            return pd.read_parquet(p)
        if p.suffix == ".csv":
            return pd.read_csv(p, keep_default_na=False)
        if p.suffix in (".jsonl", ".json"):
            return pd.read_json(p, lines=p.suffix == ".jsonl")
    except Exception as e:  # pandas and pyarrow raise many types for malformed files
        raise EveError(f"cannot read manifest {p}: {' '.join(str(e).split())}") from None
    raise EveError(f"manifest {p} must be .parquet, .csv or .jsonl")


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write by suffix, atomically (temporary name, then rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        if p.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        elif p.suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif p.suffix == ".jsonl":
            df.to_json(tmp, orient="records", lines=True)
        else:
            raise EveError(f"manifest {p} must be .parquet, .csv or .jsonl")
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return p


def validate(df: pd.DataFrame, origin: str, base: Path | None = None, check_files: bool = True,
             kind: str = "video") -> pd.DataFrame:
    """Check the schema of a "video" manifest (clips) or a "captions" one (LoRA alignment); return the table with
    `video` made absolute and `task` lower-cased.

    Every problem is an EveError naming the manifest, the row and the column.
    """
    required = REQUIRED if kind == "video" else CAPTIONS_REQUIRED
    missing = [c for c in required if c not in df.columns]
    if missing:
        why = " (LoRA alignment samples each input image from its input caption)" if "input_caption" in missing else ""
        raise EveError(f"manifest {origin} lacks column(s) {', '.join(missing)}{why} "
                       f"(has: {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise EveError(f"manifest {origin} has no rows")
    df = df.reset_index(drop=True).copy()
    for col in required:
        bad = [i for i, v in enumerate(df[col]) if not isinstance(v, str) or not v.strip()]
        if bad:
            raise EveError(f"manifest {origin}: row {bad[0]}, column {col!r} is empty or not text ({len(bad)} rows)")
    df["task"] = df["task"].str.strip().str.lower()
    unknown = df.index[~df["task"].isin(TASKS)].tolist()
    if unknown:
        i = unknown[0]
        raise EveError(f"manifest {origin}: row {i}, column 'task' has unknown task {df['task'][i]!r} "
                       f"(expected one of: {', '.join(TASKS)})")
    if "start" in df.columns:
        bad = [i for i, v in enumerate(df["start"]) if not (pd.notna(v) and float(v) == int(v) and int(v) >= 0)]
        if bad:
            raise EveError(f"manifest {origin}: row {bad[0]}, column 'start' must be a frame index >= 0")
        df["start"] = df["start"].astype(int)
    else:
        df["start"] = 0
    if "video" not in df.columns:
        return df
    base = base or Path(".")
    df["video"] = [str(p if Path(p).is_absolute() else (base / p).resolve()) for p in df["video"]]
    if check_files:
        for i, v in enumerate(df["video"]):
            if not Path(v).exists():
                raise EveError(f"manifest {origin}: row {i}, column 'video': file not found: {v}")
    return df


def read_manifest(path: str | os.PathLike, check_files: bool = True, kind: str = "video") -> pd.DataFrame:
    """Read and validate a manifest ("video" or "captions"); relative video paths are resolved against the
    manifest's folder."""
    p = Path(path)
    return validate(read_table(p), str(p), p.resolve().parent, check_files, kind)
