"""`prepare(cfg)`: a folder of raw videos -> an FDD manifest, stage by stage (each resumable, see stages.py).

probe -> split (cascaded cuts, fixed-length clips) -> score (optical-flow motion, OCR text area) -> filter ->
captions (file or model) -> [CLIP text-frame / aesthetic scores and filter] -> instructions (7 tasks per clip) ->
export (one mp4 per clip + manifest.parquet/.csv/.jsonl in eve.data.manifest's schema) -> report.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
from eve.errors import EveError

logger = logging.getLogger(__name__)


def clip_id(video: str, start: int) -> str:
    return f"{Path(video).stem}-{hashlib.sha1(video.encode()).hexdigest()[:6]}-{start:06d}"


def decode(path: str, width: int | None = None) -> np.ndarray:
    """All frames [N, H, W, 3] uint8 (resized to `width` if given)."""
    import av
    import cv2

    with av.open(path) as c:
        out = []
        for f in c.decode(c.streams.video[0]):
            img = f.to_ndarray(format="rgb24")
            if width:
                img = cv2.resize(img, (width, max(1, round(img.shape[0] * width / img.shape[1]))), interpolation=cv2.INTER_AREA)
            out.append(img)
    return np.stack(out)


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
    if cfg.learned_cuts:
        cuts.require_transnet()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    counts, drops, figures = [], {}, []
    failed: list[tuple[str, str, str]] = []  # (stage, file or clip, reason): listed in the report

    def drop(reason: str, n: int = 1):
        drops[reason] = drops.get(reason, 0) + n

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
    drop("no scene as long as a clip", int(no_clip.sum()))
    clips = clips[~no_clip].reset_index(drop=True)
    ensure(clips, "split")
    counts += [("scenes", int(clips.groupby("video")["scene"].nunique().sum()) if len(clips) else 0), ("clips", len(clips))]

    # 3. score motion and text, per video (decoded once)
    def score(r):
        frames = decode(r["video"], width=256)
        rows = []
        for c in clips[clips["video"] == r["video"]].to_dict("records"):
            f = frames[c["start"] : c["end"]]
            rows.append({"clip_id": c["clip_id"], "motion": scores.motion_score(f), "text_area": scores.text_area(f)})
        return rows

    scored = run("score", {}, clips[["video"]].drop_duplicates(), lambda r: r["video"], score, cfg.workers)
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
    for reason, n in clips.loc[clips["drop"] != "", "drop"].value_counts().items():
        drop(reason, int(n))
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
            frames = decode(r["video"])
            text = captioner(frames[(r["start"] + r["end"]) // 2])
        return [{"clip_id": r["clip_id"], "input_caption": text or ""}]

    capt = run("captions", {"file": cfg.captions_file, "model": cfg.caption_model}, kept, lambda r: r["clip_id"],
               caption, 1 if captioner else cfg.workers)
    ensure(capt, "captions")
    kept = kept.merge(capt, on="clip_id")
    nocap = kept["input_caption"] == ""
    drop("no caption", int(nocap.sum()))
    kept = kept[~nocap].reset_index(drop=True)
    counts += [("captioned", len(kept))]
    ensure(kept, "captions")

    # 6. optional CLIP text-frame and aesthetic scores
    if cfg.clip_model:
        scorer = scores.ClipScorer(cfg.clip_model, cfg.aesthetic_head)

        def clip_scores(r):
            frame = decode(r["video"], width=256)[(r["start"] + r["end"]) // 2]
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
                drop(f"{col} < {thr:.3g}", int(low.sum()))
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
    drop("instructions rejected", len(unwritten))
    ins = ins[ins["task"] != ""]
    counts += [("clips with 7 instructions", ins["clip_id"].nunique())]

    # 8. export clips and the manifest
    final = kept[kept["clip_id"].isin(ins["clip_id"])]
    if final.empty:
        report = write_report(out, counts, drops, figures, [f"Instruction writer: {cfg.instructions}."], failed)
        raise EveError(f"no clip survived the stages; see {report} and {rejects_path}")

    def export(r):
        from eve.data.video import to_tensor, write_video

        frames = decode(r["video"])
        rows = []
        for c in final[final["video"] == r["video"]].to_dict("records"):
            path = out / "clips" / f"{c['clip_id']}.mp4"
            if not path.is_file():
                write_video(path, to_tensor(frames[c["start"] : c["end"]]), cfg.export_fps or c["fps"])
            rows.append({"clip_id": c["clip_id"], "clip_path": str(path.relative_to(out))})
        return rows

    exported = run("export", {"fps": cfg.export_fps}, final[["video"]].drop_duplicates(), lambda r: r["video"], export,
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
