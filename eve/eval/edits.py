"""The edit list an evaluation runs: one row per (source video, edit) with columns id, video, instruction, caption
(the output caption), input_caption (the source caption, for ViCLIP_dir), task, start (the first frame edited;
the clip runs from there to the video's end) and optionally mask (a video or frame folder, white where the edit may
change the scene: structure is scored outside it).

Two sources are read directly:

* eve's manifest (csv / jsonl / parquet, `eve.data.manifest`): its rows as they are (input_caption optional).
* a TGVE / TGVE+ folder (LOVEU-TGVE-2023; paper §4.1, paper-notes §3.1), recognised by `LOVEU-TGVE-2023_Dataset.csv`:
  - that table: a header row naming "Video name", "Our GT caption" (the source caption) and the four edit columns
    ("Style Change Caption", "Object Change Caption", "Background Change Caption", "Multiple Changes Caption");
    rows that name no video (the DAVIS / YouTube / Videvo section lines) are skipped. TGVE gives output captions,
    no instructions: the instruction is taken from InsV2V's `loveu_tgve_edit_prompt_dict.json` when the folder
    holds it ({video: {output caption: instruction}}), else the output caption stands in for it (as EVE's figures
    suggest InsV2V's file does for some prompts);
  - TGVE+'s three tasks (remove, add, texture): every other csv / jsonl in the folder with a video column ("Video
    name" or video_name or video), a task column and instruction and output caption columns ("instruction", and
    "output caption", output_caption or caption), header names matched without case or punctuation;
  - each video is found under the folder by name: `<name>.mp4` (or another container) or a `<name>/` folder of
    frames, anywhere below it.

The TGVE+ release (HF `facebook/tgve_plus`) could not be inspected offline: its layout is read by the rules above,
which a differently named column would defeat with one error line naming the file and the columns found.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from eve.errors import EveError
from eve.tasks import TASKS

TGVE_TABLE = "LOVEU-TGVE-2023_Dataset.csv"
INSV2V_PROMPTS = "loveu_tgve_edit_prompt_dict.json"
# TGVE's four edit columns and the eve task each is (paper-notes §3.1); "multiple changes" edits several things at
# once, the nearest of the seven tasks is global
TGVE_TASKS = {"stylechangecaption": "style", "objectchangecaption": "local",
              "backgroundchangecaption": "background", "multiplechangescaption": "global"}
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif")
COLUMNS = ["id", "video", "instruction", "caption", "input_caption", "task", "start", "mask"]


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def read_edits(source: str | Path) -> pd.DataFrame:
    """The edit list of an eve manifest file or a TGVE / TGVE+ folder (module docstring), COLUMNS in order."""
    p = Path(source)
    if p.is_dir():
        if not (p / TGVE_TABLE).is_file():
            raise EveError(f"--edits {p} is a folder without {TGVE_TABLE}: give an eve manifest or a TGVE folder")
        rows = read_tgve(p)
    elif p.is_file():
        rows = _read_manifest(p)
    else:
        raise EveError(f"--edits {p} not found")
    if "start" not in rows:
        rows["start"] = 0
    rows["start"] = rows["start"].fillna(0).astype(int)
    if rows.empty:
        raise EveError(f"--edits {p} holds no edits")
    if rows["id"].duplicated().any():
        raise EveError(f"--edits {p}: edit id {rows['id'][rows['id'].duplicated()].iloc[0]!r} appears twice")
    return rows[COLUMNS].reset_index(drop=True)


def _read_manifest(path: Path) -> pd.DataFrame:
    from eve.data.manifest import read_manifest

    rows = read_manifest(path).copy()
    rows["video"] = [str(Path(v).resolve()) for v in rows["video"]]  # the same edit whichever way it was spelled
    if "id" not in rows:
        rows["id"] = [f"{i:05d}-{t}" for i, t in enumerate(rows["task"])]
    for column in ("input_caption", "mask"):
        rows[column] = [None if pd.isna(v) or not str(v).strip() else str(v).strip()
                        for v in (rows[column] if column in rows else [None] * len(rows))]
    rows["mask"] = [m if m is None or Path(m).is_absolute() else str((path.parent / m).resolve()) for m in rows["mask"]]
    rows["id"] = rows["id"].astype(str)
    return rows


def _table(path: Path, **kwargs) -> pd.DataFrame:
    """A csv / jsonl as strings (empty cells stay empty), or one EveError line naming the file."""
    try:
        if path.suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False).fillna("").astype(str)
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs).fillna("")  # short rows: empty cells
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise EveError(f"cannot read {path}: {' '.join(str(e).split())[:200]}") from None


def read_tgve(folder: Path) -> pd.DataFrame:
    table = folder / TGVE_TABLE
    raw = _table(table, header=None)
    header = next((i for i, row in raw.iterrows() if "videoname" in map(_key, row)), None)
    if header is None:
        raise EveError(f"{table}: no header row naming 'Video name'")
    names = [_key(c) for c in raw.iloc[header]]
    body = raw.iloc[header + 1 :].set_axis(names, axis=1)
    missing = [c for c in ("videoname", "ourgtcaption", *TGVE_TASKS) if c not in names]
    if missing:
        raise EveError(f"{table}: no column(s) {', '.join(missing)} (has: {', '.join(raw.iloc[header])})")
    prompts = {}
    if (folder / INSV2V_PROMPTS).is_file():
        try:
            prompts = json.loads((folder / INSV2V_PROMPTS).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EveError(f"cannot read {folder / INSV2V_PROMPTS}: {e}") from None
        if not isinstance(prompts, dict) or not all(isinstance(v, dict) for v in prompts.values()):
            raise EveError(f"{folder / INSV2V_PROMPTS} is not {{video: {{output caption: instruction}}}}")
    videos = _video_index(folder)
    rows, sources = [], {}
    for _, r in body.iterrows():
        name = r["videoname"].strip()
        if not name or not any(r[c].strip() for c in TGVE_TASKS):  # a section line ("DAVIS Videos")
            continue
        sources[_key(name)] = r["ourgtcaption"].strip()
        for column, task in TGVE_TASKS.items():
            caption = r[column].strip()
            if caption:
                instruction = prompts.get(name, {}).get(caption, caption)
                rows.append({"id": f"{name}-{task}", "video": _find(videos, name, table), "instruction": instruction,
                             "caption": caption, "input_caption": r["ourgtcaption"].strip(), "task": task})
    for extra in sorted(folder.glob("*")):
        if extra.suffix in (".csv", ".jsonl") and extra.name != TGVE_TABLE:
            rows += _read_plus(extra, videos, sources)
    out = pd.DataFrame(rows)
    out["mask"] = None
    return out


def _read_plus(path: Path, videos: dict, sources: dict) -> list[dict]:
    """TGVE+ rows of one table: (video, task, instruction, output caption)."""
    df = _table(path)
    by_key = {_key(c): c for c in df.columns}

    def column(*names: str) -> str:
        found = next((by_key[n] for n in names if n in by_key), None)
        if found is None:
            raise EveError(f"{path}: no column {' / '.join(names)} (has: {', '.join(map(str, df.columns))})")
        return found

    cv, ct = column("videoname", "video"), column("task", "edittask", "category")
    ci, cc = column("instruction", "editinstruction"), column("outputcaption", "caption", "targetcaption")
    rows = []
    for i, r in df.iterrows():
        name, task = str(r[cv]).strip(), str(r[ct]).strip().lower()
        task = {"removal": "remove", "addition": "add", "objectremoval": "remove", "objectaddition": "add",
                "texturealteration": "texture"}.get(_key(task), task)
        if task not in TASKS:
            raise EveError(f"{path}: row {i + 1} has task {r[ct]!r} (expected one of {', '.join(TASKS)})")
        if not str(r[ci]).strip() or not str(r[cc]).strip():
            raise EveError(f"{path}: row {i + 1} ({name}, {task}) has an empty instruction or output caption")
        rows.append({"id": f"{name}-{task}", "video": _find(videos, name, path), "instruction": str(r[ci]).strip(),
                     "caption": str(r[cc]).strip(), "input_caption": sources.get(_key(name)), "task": task})
    return rows


def _video_index(folder: Path) -> dict[str, Path]:
    """name -> a video file or a frame folder, anywhere below `folder`."""
    index: dict[str, Path] = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
            index.setdefault(_key(p.stem), p)
        elif p.is_dir() and any(f.suffix.lower() in (".jpg", ".jpeg", ".png") for f in p.iterdir()):
            index.setdefault(_key(p.name), p)
    return index


def _find(videos: dict[str, Path], name: str, table: Path) -> str:
    found = videos.get(_key(name))
    if found is None:
        raise EveError(f"{table}: video {name!r} is not under {table.parent} (as {name}.mp4 or a {name}/ frame folder)")
    return str(found.resolve())  # the same edit whichever way --edits was spelled
