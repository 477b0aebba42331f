"""`python edit.py`: edit a video with a text instruction. User errors print one line and exit 2."""

from __future__ import annotations

import argparse
import itertools
import logging
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from eve.errors import EveError

logger = logging.getLogger("eve.edit")


EDIT_KEYS = {
    "edit.steps": "student DDIM steps",
    "edit.teacher_steps": "edit-teacher DDIM steps for frame 0",
    "edit.teacher_guidance": "edit-teacher text guidance",
    "edit.window_overlap": "edited frames each later window starts from",
    "edit.max_long_side": "cap on the working size's long side",
    "edit.task_from": "where a task not given comes from: rules | writer",
    "edit.captioner": "reads frame 0 for the output caption: a local image-to-text folder or module:attr",
    "edit.writer": "writes the output caption: template | transformers | openai | module:attr",
    "model.resolution": "short side of the working size",
}


def parser() -> argparse.ArgumentParser:
    from eve.config import EveConfig
    from eve.utils.cli import HelpFormatter, config_help

    ap = argparse.ArgumentParser(
        prog="edit.py", formatter_class=HelpFormatter,
        description="Edit a video or an image with a text instruction (EVE: the edit teacher edits frame 0, then the "
                    "student, or plug-and-play without --checkpoint, edits the clip over sliding windows).\nWith only "
                    "--instruction, the task is predicted from it and the output caption written from frame 0 "
                    "(edit.captioner, edit.writer).\nWith --lora (a style or subject LoRA) and the --checkpoint that "
                    "aligned it (train_fdd.py fdd.mode=lora_align), the aligned student edits images in that style "
                    "or with that subject, and frame 0 of videos (the video adapter then edits the rest).",
        epilog=config_help(EveConfig, EDIT_KEYS, "key=value overrides of the config (main ones)"),
    )
    ap.add_argument("--config", help="eve YAML (model + edit); default: the checkpoint's own config, else the "
                                     "committed shapes-world teachers (data/shapes/teachers/eve.yaml)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="input: mp4/webm/gif/any FFmpeg video, or a folder of frames")
    src.add_argument("--image", help="input: one png/jpg/webp/bmp image (edited as a one-frame video)")
    ap.add_argument("--instruction", required=True, help='the edit, e.g. "make the car red"')
    ap.add_argument("--caption", help="output caption the backbone sees (default: written from frame 0 and the "
                                      "instruction, or the instruction itself without edit.captioner)")
    ap.add_argument("--output", required=True, help="output .mp4 or .gif (same frame count, size and fps), or for one "
                                                    "frame .png/.jpg/.webp (same size)")
    ap.add_argument("--task", help="add, remove, background, texture, local, style or global (default: predicted "
                                   "from the instruction)")
    ap.add_argument("--steps", type=int, help="student DDIM steps (default: edit.steps)")
    ap.add_argument("--guidance", type=float, help="student text guidance scale (default: edit.guidance)")
    ap.add_argument("--seed", type=int, help="noise seed (default: edit.seed)")
    ap.add_argument("--checkpoint", help="a LoRA: an eve checkpoint folder or file, a diffusers, kohya/A1111 or peft "
                                         "LoRA (default: none, plug-and-play)")
    ap.add_argument("--lora", help="a style or subject LoRA θ_LoRA (any format above, UNet layers only), with the "
                                   "--checkpoint that aligned it, or alone (plug-and-play); sets model.lora")
    ap.add_argument("--fps", type=float, help="frame rate of a folder of frames (default: 8)")
    ap.add_argument("--first-frame", help="frame 0 already edited (an image of the clip's size): a cached edit, used "
                                          "instead of editing frame 0 (which sets most of an edit's time)")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (below)")
    return ap


def load_edit_config(config: str | None, checkpoint: str | None, overrides: list[str]):
    from eve.config import DEFAULT_CONFIG, config_from_text, load_config
    from eve.models.lora import inspect_lora

    if config is not None:
        return load_config(config, overrides)
    if checkpoint is None:
        if not DEFAULT_CONFIG.is_file():
            raise EveError("give --config (or a --checkpoint that carries its config)")
        logger.info("no --config: the shapes world's teachers (%s), which edit its 32x32 clips", DEFAULT_CONFIG)
        return load_config(DEFAULT_CONFIG, overrides)
    info = inspect_lora(checkpoint)
    if "config" not in info.meta:
        raise EveError(f"checkpoint {checkpoint} carries no config: give --config")
    # weight paths in it are relative to the checkpoint's folder (eve.config.portable_yaml): they hold when the
    # checkpoint moves with its weights; a checkpoint copied alone on the same machine finds them from where it was
    # saved
    origin = f"checkpoint {checkpoint}"
    cfg = config_from_text(info.meta["config"], origin, overrides, base=info.path.parent)
    saved_at = info.meta.get("saved_at")
    if saved_at and not Path(cfg.model.pretrained).exists() and Path(saved_at).is_dir():
        cfg = config_from_text(info.meta["config"], origin, overrides, base=saved_at)
    return cfg


def check_alignment(checkpoint: str, lora: str | None) -> None:
    """An eve checkpoint and the user's LoRA (model.lora) belong together: a LoRA-aligned checkpoint needs the LoRA it
    aligned (the same file, when both can be read), and a video-FDD checkpoint was never trained beside any."""
    from eve.config import config_from_text
    from eve.models.lora import inspect_lora, lora_fingerprint

    info = inspect_lora(checkpoint)
    if "config" not in info.meta:  # not eve's: any LoRA a user has may act as θ_align, with or without theirs
        return
    trained = config_from_text(info.meta["config"], f"checkpoint {checkpoint}", base=info.path.parent)
    if trained.fdd.mode != "lora_align":
        if lora:
            raise EveError(f"checkpoint {checkpoint} was distilled with fdd.mode={trained.fdd.mode}, beside no style or "
                           f"subject LoRA: align {lora} first (fdd.mode=lora_align), or leave out --checkpoint for "
                           "plug-and-play")
        return
    if not lora:
        raise EveError(f"checkpoint {checkpoint} aligned a style or subject LoRA with the edit adapter: give that LoRA "
                       "with --lora")
    aligned = trained.model.lora
    if aligned and Path(aligned).exists() and lora_fingerprint(aligned) != lora_fingerprint(lora):
        raise EveError(f"checkpoint {checkpoint} aligned {aligned}, not --lora {lora}: one alignment per LoRA "
                       "(paper §4.4)")


@dataclass
class Source:
    """An opened input: its reader, the frames decoded ahead (a bad file fails on them, before any weight loads), the
    frames still to come, and an optional cached edit of frame 0."""

    path: str
    reader: object
    head: list
    rest: Iterator
    first_frame: object = None

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.head[0][0].shape[-2:])


@contextmanager
def open_source(path: str, *, fps: float | None = None, image: bool = False, output: Path | None = None,
                first_frame: str | None = None) -> Iterator[Source]:
    """The input opened and its first two frames decoded, with every check that needs no weights: one frame for
    `image` inputs and image outputs, a cached frame 0 of the clip's size. `edit.py` and the web app open inputs
    here."""
    from eve.data.video import VideoReader, is_image_output, read_video

    with VideoReader(path, fps=fps) as reader:
        rest = iter(reader)
        head = list(itertools.islice(rest, 2))
        if image and len(head) > 1:
            raise EveError(f"--image {path} is a folder or video of more than one frame: give it as --video")
        if output is not None and is_image_output(output) and len(head) > 1:
            raise EveError(f"output {output} is an image, but {path} has more than one frame: write .mp4 or .gif")
        source = Source(path, reader, head, rest)
        if first_frame is not None:
            if output is not None and is_image_output(output):
                raise EveError("--first-frame is the edit of a video's frame 0: with one frame, there is nothing left "
                               "to edit")
            source.first_frame = read_video(first_frame).frames[0]
            if tuple(source.first_frame.shape[-2:]) != source.size:
                H, W = source.size
                raise EveError(f"--first-frame {first_frame} is {source.first_frame.shape[-1]}x"
                               f"{source.first_frame.shape[-2]}, the video is {W}x{H}")
        yield source


def edit_source(pipe, source: Source, output: Path, instruction: str, caption: str | None = None,
                task: str | None = None, *, on_frame=None, **call) -> tuple[str, str]:
    """Edit an opened input into `output` (an image, or a video frame by frame from the reader to the writer, so
    memory does not grow with the clip; each output frame takes its source frame's timestamp, variable frame rates
    kept, unless the reader's rate was set). `on_frame(i)` is called after each frame is written (progress; an
    exception it raises stops the edit and no output is left). `call`: the pipeline's keyword arguments
    (num_inference_steps, guidance_scale, generator, ...). Returns (task, caption) as used."""
    from eve.data.video import VideoWriter, is_image_output, write_image

    if is_image_output(output):
        out = pipe(source.head[0][0][None], instruction, caption, task=task, **call)
        write_image(output, out.frames * 2 - 1)
        if on_frame is not None:
            on_frame(0)
        return out.task, out.caption
    stamps: deque = deque()

    def stamped():
        for frame, pts in itertools.chain(source.head, source.rest):
            stamps.append(pts)
            yield frame

    written = itertools.count()

    def write(frame):
        writer.write(frame, [stamps.popleft()])
        if on_frame is not None:
            on_frame(next(written))

    with VideoWriter(output, source.reader.fps, source.reader.time_base) as writer:
        return pipe.edit_stream(stamped(), instruction, caption, write, task=task, first_frame=source.first_frame,
                                num_frames=source.reader.frame_count, **call)


def run(args: argparse.Namespace) -> None:
    from eve.data.video import check_output_path
    from eve.editing.describe import Describer
    from eve.editing.pipeline import EveVideoEditPipeline
    from eve.models.lora import inspect_lora, inspect_user_lora
    from eve.tasks import task_id

    # Everything cheap is checked before any weight is loaded.
    out = check_output_path(args.output)
    if not args.instruction.strip():
        raise EveError("the instruction is empty (--instruction)")
    if args.task is not None:
        task_id(args.task)
    if args.checkpoint is not None:
        inspect_lora(args.checkpoint)  # the LoRA file's format, from its header
    overrides = list(args.overrides)
    if args.lora is not None:
        inspect_user_lora(args.lora)
        overrides.append(f"model.lora={Path(args.lora).resolve()}")
    for flag, key in (("steps", "edit.steps"), ("guidance", "edit.guidance"), ("seed", "edit.seed")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_edit_config(args.config, args.checkpoint, overrides)
    if args.checkpoint is not None:
        check_alignment(args.checkpoint, cfg.model.lora)
    Describer(cfg.edit).check()  # edit.captioner / edit.writer name things that exist
    with open_source(args.video or args.image, fps=args.fps, image=bool(args.image), output=out,
                     first_frame=args.first_frame) as source:
        H, W = source.size
        logger.info("reading %s: %s frames, %dx%d, %s fps", source.path, source.reader.frame_count or "?", W, H,
                    source.reader.fps)
        pipe = EveVideoEditPipeline.from_eve_config(cfg)
        if args.checkpoint is not None:
            pipe.load_lora_weights(args.checkpoint)
        edit_source(pipe, source, out, args.instruction, args.caption, args.task)
    logger.info("wrote %s", out)


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging
    from eve.utils.memory import bound_heap

    args = parser().parse_args(argv)
    setup_logging()
    bound_heap()  # frames decoded one at a time: their buffers go back to the system (eve/utils/memory.py)
    return run_cli("edit.py", lambda: run(args), "interrupted; no output written")
