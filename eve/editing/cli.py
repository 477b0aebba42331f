"""`python edit.py`: edit a video with a text instruction. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import logging

from eve.errors import EveError

logger = logging.getLogger("eve.edit")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="edit.py",
        description="Edit a video with a text instruction using the EVE model (plug-and-play, or a trained LoRA).",
        epilog="Extra key=value arguments override the config, e.g. edit.window_overlap=2 model.resolution=384.",
    )
    ap.add_argument("--config", help="eve YAML (model + edit); optional when --checkpoint carries its config")
    ap.add_argument("--video", required=True, help="input: mp4/webm/gif/any FFmpeg video, or a folder of frames")
    ap.add_argument("--instruction", required=True, help='the edit, e.g. "make the car red"')
    ap.add_argument("--caption", help="output caption the backbone sees (default: the instruction)")
    ap.add_argument("--output", required=True, help="output .mp4 or .gif (same frame count, size and fps)")
    ap.add_argument("--task", help="add, remove, background, texture, local, style or global")
    ap.add_argument("--steps", type=int, help="student DDIM steps (edit.steps)")
    ap.add_argument("--guidance", type=float, help="student text guidance scale (edit.guidance)")
    ap.add_argument("--seed", type=int, help="noise seed (edit.seed)")
    ap.add_argument("--checkpoint", help="trained LoRA: a student_lora.safetensors, a diffusers LoRA file, or a folder")
    ap.add_argument("--fps", type=float, help="frame rate of a folder of frames (default 8)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    return ap


def load_edit_config(config: str | None, checkpoint: str | None, overrides: list[str]):
    from eve.config import config_from_text, load_config
    from eve.models.lora import read_lora

    if config is not None:
        return load_config(config, overrides)
    if checkpoint is None:
        raise EveError("give --config (or a --checkpoint that carries its config)")
    _, meta = read_lora(checkpoint)
    if "config" not in meta:
        raise EveError(f"checkpoint {checkpoint} carries no config: give --config")
    return config_from_text(meta["config"], f"checkpoint {checkpoint}", overrides)


def run(args: argparse.Namespace) -> None:
    from eve.data.video import check_output_path, read_video, write_video
    from eve.editing.pipeline import Editor
    from eve.tasks import task_id

    # Everything cheap is checked before any weight is loaded.
    out = check_output_path(args.output)
    if not args.instruction.strip():
        raise EveError("the instruction is empty (--instruction)")
    if args.task is not None:
        task_id(args.task)
    overrides = list(args.overrides)
    for flag, key in (("steps", "edit.steps"), ("guidance", "edit.guidance"), ("seed", "edit.seed")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_edit_config(args.config, args.checkpoint, overrides)
    video = read_video(args.video, fps=args.fps)
    logger.info("read %s: %d frames, %dx%d, %s fps", args.video, video.frames.shape[0], video.size[1], video.size[0],
                video.fps)
    editor = Editor.from_config(cfg, args.checkpoint)
    edited = editor.edit(video.frames, args.instruction, args.caption, task=args.task)
    write_video(out, edited, video.fps)
    logger.info("wrote %s", out)


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    args = parser().parse_args(argv)
    setup_logging()
    return run_cli("edit.py", lambda: run(args), "interrupted; no output written")
