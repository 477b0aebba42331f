"""`python -m eve.app`: edit videos in a browser (Gradio), served by eve's one editing path.

    python -m eve.app [--config CFG] [--checkpoint CKPT] [--host 127.0.0.1] [--port 7860] [--queue 8]
                      [--max-upload-mb 50] [--max-seconds 30] [--max-side 1920]

With no --config it serves the embedded default: the committed shapes-world teachers and, when one is committed,
the FDD student (data/shapes/student), so it works offline on a fresh clone. Every edit goes through
`eve.editing.cli.open_source` / `edit_source` (what `edit.py` runs) and one `EveVideoEditPipeline` loaded at start.

Safe to leave running: one edit runs at a time and the others wait in a bounded queue (Gradio's, which shows each
its position; a full queue is refused); an upload is checked against the limits before any work, each refusal the
one line `edit.py` would print; the app reads and writes only inside its own temporary folder (uploads included:
Gradio's cache is put there, and output names are made here, never taken from an upload); a LoRA upload must be a
safetensors file, read by its header, never unpickled; a browser session's files are removed when it ends, and the
whole folder when the app stops. It binds to 127.0.0.1 unless --host says otherwise, and never shares a public link.
"""

import argparse
import atexit
import hashlib
import itertools
import logging
import os
import queue
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from eve.errors import EveError

logger = logging.getLogger("eve.app")

VIDEO_UPLOADS = (".mp4", ".webm", ".gif", ".mov", ".mkv", ".avi")
IMAGE_UPLOADS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
TASKS_SHOWN = ("predict", "add", "remove", "background", "texture", "local", "style", "global")


@dataclass(frozen=True)
class Limits:
    """What the app accepts (each a command-line flag). The defaults fit a shared CPU machine: a clip of 30 s at
    1080p edits in minutes with the shapes teachers, and far longer with SD-1.5 on a CPU."""

    max_upload_mb: float = 50.0  # any file, video, image or LoRA (Gradio refuses larger ones as they arrive)
    max_seconds: float = 30.0  # a video's duration
    max_frames: int = 720  # a video's frame count (a folder or a file without a duration says its count)
    max_side: int = 1920  # the longer side of a frame, in pixels
    queue: int = 8  # edits waiting beside the one that runs; one more is refused

    def check(self) -> None:
        for name in ("max_upload_mb", "max_seconds", "max_frames", "max_side", "queue"):
            if not getattr(self, name) > 0:
                raise EveError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")


class Cancelled(Exception):
    """Raised inside an edit when its browser asked to stop it."""


def check_size(p: Path, limits: Limits) -> None:
    if p.stat().st_size > limits.max_upload_mb * 2**20:
        raise EveError(f"{p.name} is {p.stat().st_size / 2**20:.1f} MB, over the {limits.max_upload_mb:g} MB limit")


def check_upload(path: str | None, limits: Limits) -> None:
    """A video or an image of an accepted kind, size, duration and resolution: one line naming what is wrong."""
    from eve.data.video import VideoReader

    if not path:
        raise EveError("upload a video or an image, or pick an example")
    p = Path(path)
    if p.suffix.lower() not in VIDEO_UPLOADS + IMAGE_UPLOADS:
        raise EveError(f"{p.name}: not a video ({', '.join(VIDEO_UPLOADS)}) or an image ({', '.join(IMAGE_UPLOADS)})")
    check_size(p, limits)
    with VideoReader(p) as reader:  # the same reader edit.py opens: a file that is no video fails here, in one line
        frames = iter(reader)
        first = next(frames, None)
        if first is None:
            raise EveError(f"{p.name} has no frames")
        H, W = first[0].shape[-2:]
        count = reader.frame_count
        if not count:  # webm, mkv and some gifs say no count: decode (at most one past the limit) to know it
            count = 1 + sum(1 for _ in itertools.islice(frames, limits.max_frames))
        seconds = float(count / reader.fps) if reader.fps else None
    if max(H, W) > limits.max_side:
        raise EveError(f"{p.name} is {W}x{H}, over the {limits.max_side} px limit on a side")
    if count > limits.max_frames:
        raise EveError(f"{p.name} has {count} frames, over the limit of {limits.max_frames}")
    if seconds is not None and seconds > limits.max_seconds:
        raise EveError(f"{p.name} lasts {seconds:.1f} s, over the {limits.max_seconds:g} s limit")


def check_lora_upload(path: str | None, limits: Limits, *, user: bool = False) -> str | None:
    """A LoRA upload is a safetensors file whose header eve reads as a LoRA (never a pickle); a style or subject
    LoRA (`user`) must adapt UNet layers only, as `edit.py --lora` requires."""
    from eve.models.lora import inspect_lora, inspect_user_lora

    if not path:
        return None
    p = Path(path)
    if p.suffix.lower() != ".safetensors":
        raise EveError(f"{p.name}: a LoRA upload must be a .safetensors file (pickled formats are not read here)")
    check_size(p, limits)
    (inspect_user_lora if user else inspect_lora)(p)
    return str(p)


class Editor:
    """The loaded pipeline and the app's folder. `edit` runs one request; the caller (Gradio's queue, concurrency
    one) and a lock keep edits one at a time: a cancelled edit may still be finishing frame 0 when the next starts."""

    def __init__(self, cfg, checkpoint: str | None, workdir: Path, limits: Limits):
        from eve.editing.pipeline import EveVideoEditPipeline

        self.cfg, self.checkpoint, self.workdir, self.limits = cfg, checkpoint, workdir, limits
        self.pipe = EveVideoEditPipeline.from_eve_config(cfg)
        self.pipe.set_progress_bar_config(disable=True)
        self.lock = threading.Lock()
        self.loaded: tuple[str | None, str | None] = (None, None)  # (student LoRA, style LoRA) now attached

    def session_dir(self, session: str | None) -> Path:
        """A browser session's folder: named by a hash of the id the client sent, never by the id itself."""
        name = hashlib.sha256((session or "anonymous").encode()).hexdigest()[:24]
        return self.workdir / "sessions" / name

    def forget(self, session: str | None) -> None:
        shutil.rmtree(self.session_dir(session), ignore_errors=True)

    def clean(self, message: str) -> str:
        """An error line for the page: any path inside the app's folder shortened to its file name."""
        return re.sub(re.escape(str(self.workdir)) + r"[^\s'\"]*", lambda m: Path(m.group(0)).name, message)

    def _attach(self, student: str | None, style: str | None) -> None:
        if self.loaded == (student, style):
            return
        self.pipe.unload_lora_weights()
        self.loaded = (None, None)
        try:
            if style:
                self.pipe.load_lora_weights(style, adapter_name="user")
            if student:
                self.pipe.load_lora_weights(student)
        except Exception:
            self.pipe.unload_lora_weights()  # nothing half-attached is left for the next request
            raise
        self.loaded = (student, style)

    def edit(self, source_path: str, out: Path, instruction: str, caption: str | None, task: str | None, *,
             student: str | None, style: str | None, steps: int, guidance: float, seed: int, first_frame_by: str,
             on_frame, stop: threading.Event) -> dict:
        """One edit into `out`; returns what the page shows (task, caption, NFE, seconds)."""
        import torch

        from eve.editing.cli import edit_source, open_source

        def frame_done(i: int) -> None:
            if stop.is_set():
                raise Cancelled()
            on_frame(i)

        with self.lock:
            if stop.is_set():
                raise Cancelled()
            self._attach(student, style)
            self.pipe.edit_cfg.first_frame_by = first_frame_by
            before, start = self.pipe.model.evaluations, time.perf_counter()
            with open_source(source_path, output=out) as source:
                task, caption = edit_source(self.pipe, source, out, instruction, caption, task, on_frame=frame_done,
                                            num_inference_steps=steps, guidance_scale=guidance,
                                            generator=torch.Generator().manual_seed(seed))
            return {"task": task, "caption": caption, "nfe": self.pipe.model.evaluations - before,
                    "seconds": time.perf_counter() - start}


def side_by_side(paths: list[Path], out: Path) -> Path:
    """The videos side by side (the page labels the columns), a frame at a time (memory does not grow with the
    clip), at the first one's rate."""
    from contextlib import ExitStack

    import torch

    from eve.data.video import VideoReader, VideoWriter

    with ExitStack() as stack:
        readers = [stack.enter_context(VideoReader(p)) for p in paths]
        writer = stack.enter_context(VideoWriter(out, readers[0].fps))
        for frames in zip(*readers):
            writer.write(torch.cat([f for f, _ in frames], dim=-1)[None])  # [1, 3, H, n * W]
    return out


def build(editor: Editor, examples: list[list[str]]):
    """The Gradio page (a gr.Blocks), its queue set to the limits."""
    import gradio as gr

    from eve.editing.cli import check_alignment
    from eve.tasks import task_id

    has_student = editor.checkpoint is not None

    def run(video, instruction, caption, task, steps, guidance, seed, first_frame_by, lora, style, compare,
            request: gr.Request):
        """A generator: Gradio closes it when Cancel is pressed (at its next yield, at most a second away), which
        stops the edit at its next frame and removes what this request wrote."""
        session = request.session_hash if request is not None else None
        try:
            check_upload(video, editor.limits)
            if not (instruction or "").strip():
                raise EveError("the instruction is empty")
            chosen = None if task in (None, "", "predict") else task
            if chosen is not None:
                task_id(chosen)
            student = check_lora_upload(lora, editor.limits) or editor.checkpoint
            style_lora = check_lora_upload(style, editor.limits, user=True)
            if student is not None:
                check_alignment(student, style_lora)  # what edit.py refuses, refused here
        except EveError as e:  # the line edit.py prints, paths inside the app's folder shortened to file names
            raise gr.Error(editor.clean(str(e)), print_exception=False) from None
        folder = editor.session_dir(session)
        folder.mkdir(parents=True, exist_ok=True)
        image = Path(video).suffix.lower() in IMAGE_UPLOADS
        suffix = ".png" if image else ".mp4"
        runs = [("student" if student else "plug-and-play", student)]
        if compare and student:
            runs.insert(0, ("plug-and-play", None))
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        results: dict = {}
        made: list[Path] = []  # every file this request writes, removed if it is cancelled

        def work():
            try:
                for label, lora_path in runs:
                    out = folder / f"{uuid.uuid4().hex}{suffix}"
                    made.append(out)
                    events.put(("start", label))
                    results[label] = editor.edit(
                        video, out, instruction.strip(), (caption or "").strip() or None, chosen,
                        student=lora_path, style=style_lora, steps=int(steps), guidance=float(guidance),
                        seed=int(seed), first_frame_by=first_frame_by,
                        on_frame=lambda i, label=label: events.put(("frame", label, i)), stop=stop) | {"path": out}
                if compare and not image and len(results) > 1:
                    events.put(("start", "side by side"))
                    made.append(folder / f"{uuid.uuid4().hex}.mp4")
                    side_by_side([Path(video)] + [r["path"] for r in results.values()], made[-1])
                    results["grid"] = made[-1]
                events.put(("done",))
            except Cancelled:
                events.put(("cancelled",))
            except EveError as e:
                events.put(("error", editor.clean(str(e))))
            except Exception as e:  # noqa: BLE001  the page says it in one line; the log keeps the traceback
                logger.exception("edit failed")
                events.put(("error", editor.clean(f"{type(e).__name__}: {e}")))

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        status, finished = "waiting for the model", False
        try:
            while True:
                try:
                    event = events.get(timeout=1.0)
                except queue.Empty:  # a yield a second: where Gradio can close this generator on Cancel
                    yield gr.update(), gr.update(), gr.update(), status
                    continue
                if event[0] == "start":
                    status = (f"{event[1]}: frame 0 (the first frame sets most of an edit's time)"
                              if event[1] != "side by side" else "writing the side-by-side video")
                elif event[0] == "frame":
                    status = f"{event[1]}: frame {event[2] + 1} edited and encoded"
                elif event[0] == "error":
                    raise gr.Error(event[1], print_exception=False)
                elif event[0] == "cancelled":
                    raise gr.Error("cancelled: nothing was written", print_exception=False)
                else:
                    finished = True
                    break
                yield gr.update(), gr.update(), gr.update(), status
        finally:  # Cancel (GeneratorExit), a closed page or an error: stop the edit, keep nothing of this request
            stop.set()
            if not finished:
                thread.join()  # the edit stops at its next frame (frame 0 cannot be interrupted)
                for path in made:
                    path.unlink(missing_ok=True)
        main = results[runs[-1][0]]
        info = (f"**task** {main['task']} · **caption** {main['caption']} · "
                + " · ".join(f"**{label}** {r['nfe']} NFE, {r['seconds']:.1f} s" for label, r in results.items()
                             if label != "grid"))
        edited, grid = str(main["path"]), results.get("grid")
        yield *((None, edited) if image else (edited, None)), (str(grid) if grid else None), info

    with gr.Blocks(title="eve: edit a video with an instruction", delete_cache=(600, 3600),
                   analytics_enabled=False) as page:
        gr.Markdown("# eve\nEdit a video with a text instruction: the edit teacher edits frame 0, then "
                    + ("the FDD student" if has_student else "plug-and-play (no student loaded)")
                    + " edits the clip in a few steps over sliding windows.")
        with gr.Row():
            with gr.Column():
                video = gr.File(label="video or image", file_types=list(VIDEO_UPLOADS + IMAGE_UPLOADS),
                                elem_id="source")
                instruction = gr.Textbox(label="instruction", placeholder="make the background dotted",
                                         elem_id="instruction")
                caption = gr.Textbox(label="output caption (empty: written from frame 0 and the instruction)")
                task = gr.Dropdown(list(TASKS_SHOWN), value="predict", label="task (predict: read from the instruction)")
                compare = gr.Checkbox(value=False, label="compare: input | plug-and-play | student",
                                      visible=has_student, elem_id="compare")
                with gr.Accordion("advanced", open=False):
                    steps = gr.Slider(1, 50, value=editor.cfg.edit.steps, step=1, label="steps")
                    guidance = gr.Slider(1.0, 10.0, value=editor.cfg.edit.guidance, step=0.5, label="text guidance")
                    seed = gr.Number(value=editor.cfg.edit.seed, precision=0, label="seed")
                    first = gr.Radio(["teacher", "student"], value=editor.cfg.edit.first_frame_by,
                                     label="frame 0 edited by")
                    lora = gr.File(label="student LoRA or checkpoint file (.safetensors, any format eve reads)",
                                   file_types=[".safetensors"])
                    style = gr.File(label="style or subject LoRA (.safetensors)", file_types=[".safetensors"])
                with gr.Row():
                    go = gr.Button("Edit", variant="primary", elem_id="edit")
                    cancel = gr.Button("Cancel", elem_id="cancel")
                if examples:
                    gr.Examples(examples=examples, inputs=[video, instruction], label="examples (committed clips)")
            with gr.Column():
                result = gr.Video(label="edited", elem_id="result")
                result_image = gr.Image(label="edited image", type="filepath", elem_id="result-image")
                grid = gr.Video(label="input | plug-and-play | student", elem_id="grid")
                status = gr.Markdown(elem_id="status")
        event = go.click(run, [video, instruction, caption, task, steps, guidance, seed, first, lora, style, compare],
                         [result, result_image, grid, status], concurrency_limit=1, show_progress="full")
        cancel.click(None, None, None, cancels=[event])

        def forget(request: gr.Request):
            editor.forget(request.session_hash)

        page.unload(forget)
    page.queue(max_size=editor.limits.queue, default_concurrency_limit=1)
    return page


def write_examples(folder: Path, count: int = 3) -> list[list[str]]:
    """The committed FDD clips (data/shapes/fdd, frame folders) as mp4, with an instruction each of a different
    task, for the page's examples: [video, instruction] rows."""
    from eve.config import DEFAULT_CONFIG
    from eve.data.manifest import read_manifest
    from eve.data.video import read_video, write_video

    rows = read_manifest(DEFAULT_CONFIG.parents[1] / "fdd" / "manifest.csv", check_files=False)  # 3 rows are read
    rows = rows.drop_duplicates("task").head(count)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, row in enumerate(rows.itertuples()):
        clip = read_video(row.video, fps=8)
        out.append([str(write_video(folder / f"example-{i}.mp4", clip.frames, clip.fps)), row.instruction])
    return out


LIMIT_HELP = {"max_upload_mb": "largest upload (video, image or LoRA), MB",
              "max_seconds": "longest video, seconds", "max_frames": "most frames in a video",
              "max_side": "longest side of a frame, pixels",
              "queue": "edits waiting beside the one that runs (one more is refused)"}


def parser() -> argparse.ArgumentParser:
    from eve.utils.cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m eve.app", formatter_class=HelpFormatter,
                                 description="Edit videos in a browser (a Gradio page on 127.0.0.1), served by eve's "
                                             "one editing path: one edit at a time, a bounded queue, uploads checked "
                                             "against the limits below before any work.")
    ap.add_argument("--config", help="eve YAML (model + edit); default: the committed shapes-world teachers")
    ap.add_argument("--checkpoint", help="the student: any LoRA eve reads (default with no --config: the committed "
                                         "shapes-world student, when there is one; else plug-and-play)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7860, help="port to serve on")
    for name, value in vars(Limits()).items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=LIMIT_HELP[name])
    return ap


def serve(args: argparse.Namespace) -> None:
    from eve.config import DEFAULT_CONFIG, load_config
    from eve.editing.cli import check_alignment, load_edit_config
    from eve.models.lora import inspect_lora

    limits = Limits(**{name: getattr(args, name) for name in vars(Limits())})
    limits.check()
    checkpoint = args.checkpoint
    if args.config is None and checkpoint is None:
        # the embedded default, as the demo runs it: the teachers' own eve.yaml (10-step frame 0, the world's
        # captioner and writer), and the committed student at the steps it was distilled for
        committed = DEFAULT_CONFIG.parents[1] / "student"
        checkpoint = str(committed) if (committed / "student_lora.safetensors").is_file() else None
        steps = [f"edit.steps={load_edit_config(None, checkpoint, []).fdd.k}"] if checkpoint else []
        cfg = load_config(DEFAULT_CONFIG, steps)
    else:
        cfg = load_edit_config(args.config, checkpoint, [])
    if checkpoint is not None:
        inspect_lora(checkpoint)  # the operator's student: any format eve reads, checked before weights load
        check_alignment(checkpoint, cfg.model.lora)
    workdir = Path(tempfile.mkdtemp(prefix="eve-app-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # uploads land in the app's folder, nowhere else
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no calls out of this machine
    editor = Editor(cfg, checkpoint, workdir, limits)
    examples = write_examples(workdir / "examples") if args.config is None else []
    page = build(editor, examples)
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # a stopped app removes its folder (atexit), as on Ctrl-C
    logger.info("serving on http://%s:%d (limits: %s; folder %s)", args.host, args.port, limits, workdir)
    page.launch(server_name=args.host, server_port=args.port, share=False,
                max_file_size=int(limits.max_upload_mb * 2**20), allowed_paths=[str(workdir)], show_error=True,
                quiet=True)


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    from eve.utils.cli import run_cli
    from eve.utils.logging import setup_logging

    args = parser().parse_args(argv)
    setup_logging()
    return run_cli("python -m eve.app", lambda: serve(args), "stopped")


if __name__ == "__main__":
    raise SystemExit(main())
