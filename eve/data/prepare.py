"""`prepare(cfg)`: a folder of raw videos -> an FDD manifest, stage by stage (each resumable, see stages.py).

probe -> split (cascaded cuts, fixed-length clips) -> score (optical-flow motion, OCR text area) -> filter ->
captions (file or model) -> [CLIP text-frame / aesthetic scores and filter] -> instructions (7 tasks per clip) ->
export (one mp4 per clip + manifest.parquet/.csv/.jsonl in eve.data.manifest's schema) -> report.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from eve.data import cuts, scores
from eve.data.captions import captions_from_file, lookup, make_captioner
from eve.data.instructions import make_writer, write_instructions
from eve.data.manifest import validate, write_table
from eve.data.probe import list_videos, probe
from eve.data.report import histogram_png, write_report
from eve.data.stages import Stage
from eve.data.video import VideoReader
from eve.errors import BadInput, EveError

logger = logging.getLogger(__name__)


def clip_id(video: str, start: int) -> str:
    return f"{Path(video).stem}-{hashlib.sha1(video.encode()).hexdigest()[:6]}-{start:06d}"


def frame_at(path: str, index: int, width: int | None = None) -> np.ndarray:
    """Frame `index` of the video (decoded up to it, nothing kept before it)."""
    i = -1
    with VideoReader(path) as reader:
        for i, (image, _) in enumerate(reader.images(width)):
            if i == index:
                return image
    raise BadInput(f"{path} decodes to {i + 1} frames, fewer than the split found (frame {index})")


def clip_frames(path: str, clips: list[dict], width: int | None = None,
                short_side: int | None = None) -> Iterator[tuple[dict, np.ndarray]]:
    """(clip, its frames [n, H, W, 3]) for clips (dicts with start and end) of one video, each as soon as its last
    frame is decoded; only frames some clip still needs are held. A video that decodes to fewer frames than its
    clips reach is a BadInput (the split counted them)."""
    if not clips:
        return
    last, i = max(c["end"] for c in clips), -1
    held: dict[int, np.ndarray] = {}
    with VideoReader(path) as reader:
        for i, (image, _) in enumerate(reader.images(width, short_side)):
            if any(c["start"] <= i < c["end"] for c in clips):
                held[i] = image
            for c in clips:
                if c["end"] == i + 1:
                    yield c, np.stack([held[j] for j in range(c["start"], c["end"])])
            later = [c["start"] for c in clips if c["end"] > i + 1]
            held = {j: f for j, f in held.items() if later and j >= min(later)}
            if i + 1 >= last:
                return
    raise BadInput(f"{path} decodes to {i + 1} frames, fewer than the split found ({last})")


def fresh_clips(folder: Path, settings: dict) -> None:
    """Exported clips are reused by a resumed export only if they were made with these settings (a marker file
    says which); others are deleted, so a manifest never mixes sizes or rates."""
    marker = folder / ".export.json"
    if folder.is_dir() and (not marker.is_file() or json.loads(marker.read_text()) != settings):
        for old in folder.glob("*.mp4"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(settings))


def clip_name(row: dict) -> str:
    """How the report names a clip: its file and frames (a whole file when it yielded no clip)."""
    if row.get("start", -1) is None or row.get("start", -1) < 0:
        return row["video"]
    return f"{row['video']} frames {row['start']}-{row['end']}"


def writer_for(cfg):
    return make_writer(cfg.instructions, llm_model=cfg.llm_model, llm_url=cfg.llm_url, seed=cfg.seed,
                       max_new_tokens=cfg.llm_max_new_tokens)


def prepare(cfg) -> Path:
    if not cfg.input:
        raise EveError("input is not set: give a folder of videos or a file listing them")
    try:
        videos = list_videos(cfg.input)
    except FileNotFoundError:
        raise EveError(f"input not found: {cfg.input}") from None
    if not videos:
        raise EveError(f"no videos found in {cfg.input}")
    if cfg.captions_file is None and cfg.caption_model is None:
        raise EveError("give captions_file or caption_model: clips need input captions")
    if cfg.export_size is not None and cfg.export_size < 2:
        raise EveError(f"export_size must be at least 2 pixels, or null for the source size; got {cfg.export_size}")
    if cfg.learned_cuts:
        cuts.require_transnet()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    counts, drops, figures = [], {}, []
    failed: list[tuple[str, str, str]] = []  # (stage, file or clip, reason): listed in the report

    def drop(reason: str, n: int = 1):
        drops[reason] = drops.get(reason, 0) + n

    def dropped(stage: str, rows: pd.DataFrame, reason) -> None:
        """Count clips dropped for a reason and list each with its file in the report (`reason`: text, or a column
        of rows holding each one's)."""
        reasons = rows[reason] if isinstance(reason, str) and reason in rows else [reason] * len(rows)
        for r, why in zip(rows.to_dict("records"), reasons):
            drop(why)
            failed.append((stage, clip_name(r), why))

    def run(name: str, settings: dict, inputs: pd.DataFrame, item_id, work, workers: int) -> pd.DataFrame:
        """A stage whose failed items (damaged files) are dropped with their reason, the rest going on."""
        stage = Stage(out, name, settings)
        rows = stage.run(inputs, item_id, work, workers)
        for item, reason in stage.failures.items():
            failed.append((name, item, reason))
            drop(f"{name} failed (files listed below)")
        return rows

    def ensure(rows: pd.DataFrame, stage: str) -> None:
        """An emptied stage ends the run with one line saying which and why, the report written."""
        if len(rows):
            return
        report = write_report(out, counts, drops, figures, [], failed)
        why = "; ".join(f"{reason}: {n}" for reason, n in sorted(drops.items(), key=lambda kv: -kv[1]) if n)
        raise EveError(f"the {stage} stage left nothing to go on ({why or 'no input'}); see {report}")

    # 1. probe
    probed = run("probe", {}, pd.DataFrame({"video": videos}), lambda r: r["video"], lambda r: [probe(r["video"])],
                 cfg.workers)
    counts += [("input files", len(videos)), ("readable videos", int(probed["ok"].sum()) if len(probed) else 0)]
    for video, e in probed.loc[~probed["ok"], ["video", "error"]].itertuples(index=False) if len(probed) else []:
        drop(f"unreadable: {e}")
        failed.append(("probe", video, e))
    ensure(probed[probed["ok"]] if len(probed) else probed, "probe")

    # 2. split at cuts into clips
    def split(r):
        frames, _ = cuts.small_frames(r["video"])
        found = cuts.scenes(frames, cfg.cut_threshold, list(cfg.cut_rates), cfg.fade_level, cfg.learned_cuts)
        rows = []
        for si, sc in enumerate(found):
            for a, b in cuts.clips_in(sc, cfg.clip_frames, cfg.max_clips_per_scene):
                rows.append({"clip_id": clip_id(r["video"], a), "video": r["video"], "start": a, "end": b,
                             "fps": r["fps"], "scene": si, "scene_start": sc[0], "scene_end": sc[1]})
        return rows or [{"clip_id": "", "video": r["video"], "start": -1, "end": -1, "fps": r["fps"], "scene": len(found),
                         "scene_start": -1, "scene_end": -1}]

    split_settings = {k: getattr(cfg, k) for k in ("clip_frames", "max_clips_per_scene", "cut_threshold", "cut_rates",
                                                   "fade_level", "learned_cuts")}
    clips = run("split", split_settings, probed[probed["ok"]], lambda r: r["video"], split, cfg.workers)
    ensure(clips, "split")
    no_clip = clips["clip_id"] == ""
    dropped("split", clips[no_clip], "no scene as long as a clip")
    clips = clips[~no_clip].reset_index(drop=True)
    ensure(clips, "split")
    counts += [("scenes", int(clips.groupby("video")["scene"].nunique().sum()) if len(clips) else 0), ("clips", len(clips))]

    # 3. score motion and text, per video (decoded once)
    def score(r):
        mine = clips[clips["video"] == r["video"]].to_dict("records")
        return [{"clip_id": c["clip_id"], "motion": scores.motion_score(f),
                 "text_area": scores.text_area(f, side=cfg.text_side)} for c, f in clip_frames(r["video"], mine, width=256)]

    scored = run("score", {"text_side": cfg.text_side}, clips[["video"]].drop_duplicates(), lambda r: r["video"],
                 score, cfg.workers)
    ensure(scored, "score")
    clips = clips.merge(scored, on="clip_id")

    # 4. filter
    motion_min = scores.resolve_threshold(cfg.motion_min, clips["motion"], "motion_min")
    text_max = scores.resolve_threshold(cfg.text_max, clips["text_area"], "text_max")
    clips["drop"] = ""
    if motion_min is not None:
        clips.loc[clips["motion"] < motion_min, "drop"] = f"static (motion < {motion_min:.3g})"
    if text_max is not None:
        clips.loc[(clips["drop"] == "") & (clips["text_area"] > text_max), "drop"] = f"text overlay (area > {text_max:.3g})"
    dropped("filter", clips[clips["drop"] != ""], "drop")
    figures += [str(histogram_png(clips["motion"], out / "report" / "motion.png", "motion (optical flow)", motion_min)),
                str(histogram_png(clips["text_area"], out / "report" / "text_area.png", "text area (OCR)", text_max))]
    kept = clips[clips["drop"] == ""].reset_index(drop=True)
    counts += [("after motion and text filters", len(kept))]
    ensure(kept, "filter")

    # 5. captions
    table = captions_from_file(cfg.captions_file) if cfg.captions_file else None
    captioner = make_captioner(cfg.caption_model) if table is None else None

    def caption(r):
        text = lookup(table, r["clip_id"], r["video"]) if table is not None else None
        if text is None and captioner is not None:
            text = captioner(frame_at(r["video"], (r["start"] + r["end"]) // 2))
        return [{"clip_id": r["clip_id"], "input_caption": text or ""}]

    capt = run("captions", {"file": cfg.captions_file, "model": cfg.caption_model}, kept, lambda r: r["clip_id"],
               caption, 1 if captioner else cfg.workers)
    ensure(capt, "captions")
    kept = kept.merge(capt, on="clip_id")
    nocap = kept["input_caption"] == ""
    dropped("captions", kept[nocap], "no caption")
    kept = kept[~nocap].reset_index(drop=True)
    counts += [("captioned", len(kept))]
    ensure(kept, "captions")

    # 6. optional CLIP text-frame and aesthetic scores
    if cfg.clip_model:
        scorer = scores.ClipScorer(cfg.clip_model, cfg.aesthetic_head)

        def clip_scores(r):
            frame = frame_at(r["video"], (r["start"] + r["end"]) // 2, width=256)
            sim, aes = scorer(frame, r["input_caption"])
            return [{"clip_id": r["clip_id"], "clip_score": sim, "aesthetic": aes}]

        cs = run("clip_scores", {"model": cfg.clip_model, "head": cfg.aesthetic_head}, kept, lambda r: r["clip_id"],
                 clip_scores, 1)
        ensure(cs, "clip_scores")
        kept = kept.merge(cs, on="clip_id")
        for col, spec, name in (("clip_score", cfg.clip_min, "clip_min"), ("aesthetic", cfg.aesthetic_min, "aesthetic_min")):
            thr = scores.resolve_threshold(spec, kept[col].dropna(), name)
            figures.append(str(histogram_png(kept[col].dropna(), out / "report" / f"{col}.png", col, thr)))
            if thr is not None:
                low = kept[col] < thr
                dropped("clip_scores", kept[low], f"{col} < {thr:.3g}")
                kept = kept[~low].reset_index(drop=True)
        counts += [("after CLIP / aesthetic filters", len(kept))]
        ensure(kept, "clip_scores")

    # 7. instructions, 7 per clip
    writer = writer_for(cfg)
    rejects_path = out / "rejects.jsonl"

    def instruct(r):
        edits, reasons = write_instructions(writer, r["input_caption"], cfg.llm_retries)
        if edits is None:
            return [{"clip_id": r["clip_id"], "task": "", "instruction": "", "caption": "", "rejected": json.dumps(reasons)}]
        return [{"clip_id": r["clip_id"], "task": e["task"], "instruction": e["instruction"], "caption": e["output_caption"],
                 "rejected": json.dumps(reasons)} for e in edits]

    writer_settings = {"backend": cfg.instructions, "model": cfg.llm_model, "url": cfg.llm_url, "retries": cfg.llm_retries,
                       "seed": cfg.seed}
    ins = run("instructions", writer_settings, kept, lambda r: r["clip_id"], instruct,
              cfg.workers if cfg.instructions == "openai" else 1)
    ensure(ins, "instructions")
    unwritten = ins[ins["task"] == ""]
    with open(rejects_path, "w") as f:
        for r in ins[ins["rejected"] != "[]"].drop_duplicates("clip_id").to_dict("records"):
            f.write(json.dumps({"clip_id": r["clip_id"], "reasons": json.loads(r["rejected"]),
                                "dropped": r["task"] == ""}) + "\n")
    dropped("instructions", kept[kept["clip_id"].isin(unwritten["clip_id"])],
            f"instructions rejected ({rejects_path.name})")
    ins = ins[ins["task"] != ""]
    counts += [("clips with 7 instructions", ins["clip_id"].nunique())]

    # 8. export clips and the manifest
    final = kept[kept["clip_id"].isin(ins["clip_id"])]
    if final.empty:
        report = write_report(out, counts, drops, figures, [f"Instruction writer: {cfg.instructions}."], failed)
        raise EveError(f"no clip survived the stages; see {report} and {rejects_path}")

    def export(r):
        from eve.data.video import VideoWriter, to_tensor

        mine = final[final["video"] == r["video"]].to_dict("records")
        path = {c["clip_id"]: out / "clips" / f"{c['clip_id']}.mp4" for c in mine}
        todo = [c for c in mine if not path[c["clip_id"]].is_file()]
        for c, frames in clip_frames(r["video"], todo, short_side=cfg.export_size):
            with VideoWriter(path[c["clip_id"]], cfg.export_fps or c["fps"]) as writer:
                writer.write(to_tensor(frames))
        return [{"clip_id": c["clip_id"], "clip_path": str(path[c["clip_id"]].relative_to(out))} for c in mine]

    export_settings = {"fps": cfg.export_fps, "size": cfg.export_size}
    fresh_clips(out / "clips", export_settings)
    exported = run("export", export_settings, final[["video"]].drop_duplicates(), lambda r: r["video"], export,
                   cfg.workers)
    ensure(exported, "export")
    manifest = ins.merge(final[["clip_id", "input_caption"]], on="clip_id").merge(exported, on="clip_id")
    manifest = pd.DataFrame({"video": manifest["clip_path"], "caption": manifest["caption"],
                             "instruction": manifest["instruction"], "task": manifest["task"],
                             "input_caption": manifest["input_caption"], "start": 0,
                             "id": manifest["clip_id"] + "-" + manifest["task"]})
    validate(manifest, str(out / "manifest.parquet"), out)
    for suffix in (".parquet", ".csv", ".jsonl"):
        write_table(manifest, out / f"manifest{suffix}")
    counts += [("manifest rows (clip x task)", len(manifest))]
    report = write_report(out, counts, drops, figures,
                          [f"Instruction writer: {cfg.instructions}; rejected replies: {rejects_path.name}."], failed)
    logger.info("report: %s", report)
    return out / "manifest.parquet"
