"""`python -m eve.data --config configs/data/prepare.yaml [key=value ...]`: raw videos -> FDD manifest.
User errors print one line and exit 2; a re-run resumes where the last one stopped."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """Prepare FDD training data from raw videos: clean clips, captions, LLM-written instructions, and the
manifest train_fdd.py reads. Stages, each journalled in OUT (a killed run resumes; a re-run does no work again):

  1. probe         duration, fps, size, codec, frames; unreadable files are kept as rows with their reason
  2. split         cut detection (content change at several frame steps, fades; TransNetV2 with learned_cuts),
                   then clips of clip_frames frames inside each scene
  3. score/filter  optical-flow motion and OCR text area; thresholds are numbers or quantiles (motion_min=q0.2)
  4. captions      from captions_file, or a local image-to-text model (caption_model) on the middle frame;
                   then optional CLIP text-frame and aesthetic scores and their filters (clip_model)
  5. instructions  one instruction and output caption per task (7 tasks) from the writer (instructions=...)
  6. export        OUT/clips/*.mp4, OUT/manifest.parquet (+ .csv, .jsonl) and OUT/report/report.md"""

KEYS = {
    "input": "folder of videos, or a text file listing video paths",
    "out": "stage manifests, clips/, report/",
    "workers": "videos / clips processed in parallel",
    "clip_frames": "frames per clip, at the source rate",
    "cut_threshold": "mean HSV change (0-255) between sampled frames that is a cut",
    "learned_cuts": "confirm cuts with TransNetV2 (pip install -e '.[cuts]')",
    "motion_min": "mean optical-flow magnitude to keep a clip",
    "text_max": "fraction of the frame covered by OCR text to keep a clip",
    "text_side": "OCR detector input: a frame's shorter side is upscaled to it (384; RapidOCR's own: 736)",
    "captions_file": "csv/jsonl of (video or clip_id, caption)",
    "caption_model": "local image-to-text model folder",
    "instructions": "writer: template | transformers | openai",
    "llm_model": "local chat model folder, or the model name on an OpenAI-compatible server",
    "llm_url": "OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1",
    "llm_retries": "retries of a rejected reply",
}


def main(argv: list[str] | None = None) -> int:
    from eve.config import PrepConfig, load_config
    from eve.data.prepare import prepare
    from eve.utils.cli import HelpFormatter, config_help, run_cli
    from eve.utils.logging import setup_logging
    from eve.utils.memory import bound_heap

    ap = argparse.ArgumentParser(prog="python -m eve.data", description=DESCRIPTION, formatter_class=HelpFormatter,
                                 epilog=config_help(PrepConfig, KEYS) + "\n\nexample: python -m eve.data --config "
                                 "configs/data/prepare.yaml input=videos/ out=runs/data captions_file=captions.csv")
    ap.add_argument("--config", help="YAML of the keys below (see configs/data/prepare.yaml)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="any key below, e.g. input=videos/ out=runs/data")
    args = ap.parse_args(argv)
    setup_logging()
    bound_heap()  # frames decoded one at a time: their buffers go back to the system (eve/utils/memory.py)
    return run_cli("eve.data", lambda: print(prepare(load_config(args.config, args.overrides, schema=PrepConfig))),
                   "interrupted; run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
