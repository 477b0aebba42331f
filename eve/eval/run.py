"""Run the methods over an edit list, write every edited video, score them, and tabulate (python -m eve.eval).

Methods (one `EveVideoEditPipeline`, the one editing path, `method=`):

* `student=CKPT`: the distilled student (any LoRA eve reads), frame 0 by the edit teacher, the clip over windows;
* `pnp`: plug-and-play, the same with no LoRA (the adapters stacked as they come);
* `teacher`: the edit teacher on every frame as an image (the per-frame baseline), one noise for all frames;
* `sdedit`: SDEdit, every frame noised to `--sdedit-strength` of the schedule and denoised by the backbone alone
  with the output caption (text guidance `edit.teacher_guidance`);
* `source`: the input video itself, unedited (a reference row: what "no edit" scores).

A name may carry a label, `LABEL:student=CKPT`, to compare several students. Outputs, under --out:
`videos/<method>/<edit id>.mp4` (an edit already written is not redone), `scores.jsonl` (one line per method and
edit, with the metric models that gave it: a changed model re-scores), `results.csv` (every score), `table.md` and
`table.csv` (Table 1's columns per method, the paper's printed rows beside them, per task below).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from eve.errors import EveError
from eve.eval.scorers import uniform_indices
from eve.utils.files import write_text_atomic

logger = logging.getLogger("eve.eval")

KINDS = ("student", "pnp", "teacher", "sdedit", "source")

# Table 1 of the paper (arXiv 2403.09334), TGVE+ rows as printed: PickScore, CLIPFrame, ViCLIP_dir, ViCLIP_out
PAPER_TGVE_PLUS = {
    "EVE (paper)": (20.88, 0.926, 0.198, 0.251),
    "InsV2V (paper)": (20.37, 0.925, 0.174, 0.236),
    "TAV (paper)": (20.47, 0.933, 0.131, 0.242),
    "SDEdit (paper)": (20.35, 0.899, 0.144, 0.246),
    "STDF (paper)": (20.60, 0.933, 0.093, 0.227),
}
TABLE1 = ("pickscore", "clip_frame", "viclip_dir", "viclip_out")


@dataclass(frozen=True)
class Method:
    label: str
    kind: str
    checkpoint: str | None = None


def parse_methods(specs: list[str]) -> list[Method]:
    """`student=CKPT`, `pnp`, `teacher`, `sdedit`, `source`, each optionally `LABEL:...`; labels unique."""
    out = []
    for spec in specs:
        label, _, body = spec.partition(":") if ":" in spec.split("=")[0] else ("", "", spec)
        kind, _, ckpt = body.partition("=")
        if kind not in KINDS:
            raise EveError(f"--methods: unknown method {kind!r} in {spec!r} (expected one of {', '.join(KINDS)})")
        if (kind == "student") != bool(ckpt):
            raise EveError(f"--methods: {spec!r}: student takes a checkpoint (student=CKPT), the others none")
        out.append(Method(label or kind, kind, ckpt or None))
    labels = [m.label for m in out]
    if len(set(labels)) != len(labels):
        raise EveError(f"--methods: labels must differ (give LABEL:student=CKPT), got {', '.join(labels)}")
    return out


def subsample(frames: Tensor, count: int | None) -> tuple[Tensor, int]:
    """(at most `count` frames, every (F // count)-th from the first, that step): InsV2V's TGVE protocol
    (frame_skip = F // 32)."""
    if not count or frames.shape[0] <= count:
        return frames, 1
    step = frames.shape[0] // count
    return frames[::step][:count], step


def source_clip(row, frames: int | None) -> tuple[Tensor, float]:
    """(the edit's source frames [F, 3, H, W] in [-1, 1] from its `start`, subsampled; their frame rate)."""
    from eve.data.video import read_video

    video = read_video(row.video)
    if row.start >= video.frames.shape[0]:
        raise EveError(f"edit {row.id}: start {row.start} is past the end of {row.video} ({video.frames.shape[0]} "
                       "frames)")
    clip, step = subsample(video.frames[row.start :], frames)
    return clip, float(video.fps) / step


def settings(cfg, method: Method, *, frames: int | None, seed: int, sdedit_strength: float) -> dict:
    """Everything a method's videos depend on besides the edits: a folder of videos made otherwise is refused."""
    from omegaconf import OmegaConf

    from eve.models.lora import lora_fingerprint

    made = {"kind": method.kind, "frames": frames, "seed": seed}
    if method.kind == "source":
        return made
    conf = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    made["config"] = hashlib.sha1(json.dumps([conf["model"], conf["edit"]], sort_keys=True, default=str).encode()
                                  ).hexdigest()[:16]
    if method.checkpoint:
        made["checkpoint"] = [str(Path(method.checkpoint).resolve()), lora_fingerprint(method.checkpoint)]
    if method.kind == "sdedit":
        made["strength"] = sdedit_strength
    return made


def check_resume(out: Path, edits: pd.DataFrame, made: dict[str, dict]) -> None:
    """A re-run continues only what it would make the same way: the same settings per method (videos/<label>/
    settings.json) and the same edit behind each id (edits.csv); otherwise one line saying what differs. Reads
    only."""
    for label, want in made.items():
        f = out / "videos" / label / "settings.json"
        if f.is_file():
            have, want = json.loads(f.read_text()), json.loads(json.dumps(want))  # as JSON stores it
            if have != want:
                differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
                raise EveError(f"{f.parent} was made with other settings ({', '.join(differ)} differ): give another "
                               "--out or method label, or delete that folder")
    seen = out / "edits.csv"
    if seen.is_file():
        before = pd.read_csv(seen, dtype=str, keep_default_na=False).set_index("id")
        now = _as_text(edits).set_index("id")
        for i in before.index.intersection(now.index):
            if list(before.loc[i]) != list(now.loc[i, before.columns]):
                raise EveError(f"edit {i} is not the edit {seen} recorded for that id: give another --out, or "
                               "delete its videos and scores")


def _as_text(edits: pd.DataFrame) -> pd.DataFrame:
    """The edits as edits.csv holds them: every cell a string, a missing one empty."""
    return edits.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v)).astype(object)


def record(out: Path, edits: pd.DataFrame, made: dict[str, dict]) -> None:
    """What `check_resume` compares a re-run with: each method's settings and the edit behind each id."""
    seen = out / "edits.csv"
    for label, want in made.items():
        (out / "videos" / label).mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "videos" / label / "settings.json", json.dumps(want, indent=1))
    merged = _as_text(edits)
    if seen.is_file():
        merged = pd.concat([pd.read_csv(seen, dtype=str, keep_default_na=False), merged]).drop_duplicates("id")
    write_text_atomic(seen, merged.to_csv(index=False))


def edit_seed(seed: int, edit_id: str) -> int:
    """One seed per edit, the same for every method: methods differ by what they are, not by their noise."""
    return seed * 1_000_003 + int(hashlib.sha1(edit_id.encode()).hexdigest()[:8], 16)


def video_path(out: Path, method: Method, edit_id: str) -> Path:
    return out / "videos" / method.label / f"{edit_id}.mp4"


def edit_all(cfg, edits: pd.DataFrame, methods: list[Method], out: Path, *, frames: int | None, seed: int,
             sdedit_strength: float, progress: bool = True) -> None:
    """Write every (method, edit) video not yet written; one pipeline, the student's LoRA swapped per student (a
    user LoRA named by the config stays on for every method)."""
    from tqdm.auto import tqdm

    from eve.data.video import write_video
    from eve.editing.pipeline import EveVideoEditPipeline

    todo = [(m, r) for m in methods if m.kind != "source" for r in edits.itertuples()
            if not video_path(out, m, r.id).is_file()]
    if not todo:
        return
    pipe = EveVideoEditPipeline.from_eve_config(cfg)
    pipe.set_progress_bar_config(disable=True)
    loaded = None
    for m, r in tqdm(todo, desc="editing", disable=not progress):
        want = m.checkpoint if m.kind == "student" else None
        if want != loaded:
            pipe.model.unload_lora()
            if want is not None:
                pipe.load_lora_weights(want)
            loaded = want
        source, fps = source_clip(r, frames)
        gen = torch.Generator().manual_seed(edit_seed(seed, r.id))
        kind = {"student": "eve", "pnp": "eve"}.get(m.kind, m.kind)
        result = pipe(source, r.instruction, r.caption, task=r.task, method=kind, strength=sdedit_strength,
                      generator=gen)
        write_video(video_path(out, m, r.id), result.frames * 2 - 1, fps)


@dataclass
class Scorers:
    """The metric models given (None: that metric is not computed) and what names them in the table."""

    clip: object | None = None
    pickscore: object | None = None
    video_text: object | None = None
    dino: object | None = None
    flow: object | None = None
    lpips: object | None = None
    clip_pairs: str = "consecutive"
    ids: dict = field(default_factory=dict)


def score_edit(s: Scorers, edited: Tensor, source: Tensor, row, mask: Tensor | None) -> dict:
    """Every metric the scorers allow for one edited video [F, 3, H, W] in [0, 1] against its source."""
    from eve.eval import metrics as M

    out = {}
    if s.clip is not None:
        e = s.clip.images(edited)
        out["clip_frame"] = M.clip_frame(e, s.clip_pairs)
        out["clip_text"] = M.text_frame(e, s.clip.texts([row.caption])[0])
    if s.pickscore is not None:
        out["pickscore"] = M.text_frame(s.pickscore.images(edited), s.pickscore.texts([row.caption])[0],
                                        s.pickscore.scale)
    if s.video_text is not None:
        v_out = s.video_text.video(edited)
        texts = s.video_text.texts([row.caption] + ([row.input_caption] if row.input_caption else []))
        out["viclip_out"] = M.video_text_out(v_out, texts[0])
        if row.input_caption:
            out["viclip_dir"] = M.video_text_dir(v_out, s.video_text.video(source), texts[0], texts[1])
    if s.dino is not None:
        out["dino_consistency"] = M.feature_consistency(s.dino.features(edited))
    if s.flow is not None:
        frames = s.flow.frames_for_flow(edited)
        out["warp_error"] = M.warp_error(frames, s.flow.flows(edited))
    if mask is not None:
        keep = mask < 0.5
        out["psnr_outside"] = M.masked_psnr(edited, source, keep)
        if s.lpips is not None:
            out["lpips_outside"] = M.masked_lpips(edited, source, keep, s.lpips)
    return out


def _load(path: str | Path) -> Tensor:
    from eve.data.video import read_video

    return (read_video(path).frames + 1) / 2


def _mask(path, start: int, frames: int | None, like: Tensor) -> Tensor:
    """[F, H, W] in [0, 1] (white: the edit's region), the frames of the source's and at its size."""
    import torch.nn.functional as F_

    m = subsample(_load(path)[start:], frames)[0].mean(1)
    if m.shape[0] != like.shape[0]:
        raise EveError(f"mask {path} has {m.shape[0]} frames, the video {like.shape[0]}")
    return F_.interpolate(m[:, None], size=like.shape[-2:], mode="bilinear", align_corners=False)[:, 0]


def _done(path: Path, models: dict, made: dict[str, dict]) -> dict:
    """Score lines already written with these metric models and method settings; an unreadable line (a kill while
    it was written) is dropped, and the file rewritten without it."""
    done, kept = {}, []
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        kept.append(line)
        if r.get("models") == models and r.get("settings") == json.loads(json.dumps(made.get(r["method"]))):
            done[r["method"], r["id"]] = r
    write_text_atomic(path, "".join(f"{line}\n" for line in kept))
    return done


def score_all(edits: pd.DataFrame, methods: list[Method], out: Path, s: Scorers, *, frames: int | None,
              made: dict[str, dict], progress: bool = True) -> pd.DataFrame:
    """Score every written video; lines already in scores.jsonl with the same metric models and settings are kept."""
    from tqdm.auto import tqdm

    path = out / "scores.jsonl"
    done = _done(path, s.ids, made)
    pending = [(m, r) for m in methods for r in edits.itertuples() if (m.label, r.id) not in done]
    with open(path, "a") as fh:
        for m, r in tqdm(pending, desc="scoring", disable=not progress):
            source = (source_clip(r, frames)[0] + 1) / 2
            edited = source if m.kind == "source" else _load(video_path(out, m, r.id))
            if edited.shape != source.shape:
                raise EveError(f"{video_path(out, m, r.id)} is {tuple(edited.shape)}, its source "
                               f"{tuple(source.shape)}: delete it to edit again")
            mask = _mask(r.mask, r.start, frames, source) if r.mask else None
            line = {"method": m.label, "id": r.id, "task": r.task, "models": s.ids, "settings": made[m.label],
                    **score_edit(s, edited, source, r, mask)}
            fh.write(json.dumps(line) + "\n")
            fh.flush()
            done[m.label, r.id] = line
    rows = [done[m.label, r.id] for m in methods for r in edits.itertuples()]
    return pd.DataFrame(rows).drop(columns=["models", "settings"])


def tables(scores: pd.DataFrame, *, models: dict, seed: int, frames: int | None, reference: bool) -> tuple[str, pd.DataFrame]:
    """(markdown, overall table): per method the mean of every metric over all edits (Table 1's columns first), the
    paper's TGVE+ rows as labelled references, then per task (each metric's mean per task, one table per metric)."""
    from eve.utils.tables import markdown

    metrics = [c for c in scores.columns if c not in ("method", "id", "task")]
    ordered = [c for c in TABLE1 if c in metrics] + [c for c in metrics if c not in TABLE1]
    order = list(dict.fromkeys(scores["method"]))
    overall = scores.groupby("method", sort=False)[ordered].mean().reindex(order)
    overall.insert(0, "n", scores.groupby("method", sort=False).size().reindex(order))
    viclip = "viclip" in str(models.get("video_text", "")).lower()
    if reference:
        ref = pd.DataFrame(PAPER_TGVE_PLUS, index=list(TABLE1)).T
        if not viclip:  # the paper's ViCLIP numbers beside another model's would read as comparable: they are not
            ref[["viclip_dir", "viclip_out"]] = float("nan")
        ref = ref[[c for c in TABLE1 if c in ordered]]
        overall = pd.concat([overall, ref])
        overall["n"] = [int(v) if v == v else "-" for v in overall["n"]]  # the paper's rows: not counted here
    lines = ["| metric model | id |", "|---|---|"] + [f"| {k} | {v} |" for k, v in models.items()]
    parts = ["## Overall (mean over edits)", "", markdown(overall.round(4)), ""]
    if reference:
        parts += ["Rows marked (paper) are the paper's Table 1 TGVE+ numbers as printed, not run here (their metric",
                  "models: PickScore_v1, CLIP ViT-L/14, ViCLIP-L/14)."
                  + ("" if viclip else " Their ViCLIP columns are left empty: the video-text model here is not ViCLIP.")]
    parts += ["", f"Seed {seed}; frames per video: {frames or 'all'}.", "", "## Metric models", "", *lines, ""]
    for metric in ordered:
        per_task = scores.pivot_table(index="method", columns="task", values=metric, aggfunc="mean", sort=False)
        parts += [f"## {metric} per task", "", markdown(per_task.reindex(order).round(4)), ""]
    return "\n".join(parts), overall


def write_grid(path: Path, edits: pd.DataFrame, methods: list[Method], out: Path, *, count: int = 3,
               columns: int = 4) -> None:
    """A picture: for the first edit of each of `count` tasks, one row per method (the source first), `columns`
    frames spread over the video, every video at the first one's size (short side at most 128)."""
    import torch.nn.functional as F_

    from eve.train.samples import grid_image

    picked = edits.drop_duplicates("task").head(count)
    rows, labels, size = [], [], None
    for r in picked.itertuples():
        for m in [Method("source", "source")] + [m for m in methods if m.kind != "source"]:
            clip = (source_clip(r, None)[0] + 1) / 2 if m.kind == "source" else _load(video_path(out, m, r.id))
            clip = clip[uniform_indices(clip.shape[0], columns)]
            if size is None:
                grow = min(1.0, 128 / min(clip.shape[-2:]))
                size = (round(clip.shape[-2] * grow), round(clip.shape[-1] * grow))
            rows.append(F_.interpolate(clip, size=size, mode="bilinear", antialias=True) * 2 - 1)
            labels.append(f"{r.task}: {m.label}")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    grid_image(rows, scale=max(1, 96 // size[0]), labels=labels).save(tmp, format="PNG")
    tmp.replace(path)
