"""What an edit needs besides the instruction, when the user gives only the instruction (issue 11): the task (for
edit adapters trained with task labels) and the output caption the backbone sees.

* task: eve.tasks' rules over the instruction (`edit.task_from=rules`), or the writer's answer (`writer`);
* output caption: the data stage's captioner reads the first frame (`edit.captioner`: a local image-to-text model
  folder, or `module:attr` such as the shapes world's parser), and the data stage's instruction writer
  (`edit.writer`: template, transformers, openai, or `module:attr`) applies the instruction to that caption; with
  no captioner, or when the writer's replies are all rejected, the backbone sees the instruction itself.

Every choice is logged; a given caption or task is used as it is.
"""

from __future__ import annotations

import logging

from torch import Tensor

from eve.tasks import task_id

logger = logging.getLogger(__name__)


UNKNOWN_SOURCE = "a video"  # the input caption a writer gets when no captioner reads the frame


class Describer:
    """(task, output caption) of an edit, from an EditConfig; the captioner and writer load on first use."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._captioner = self._writer = None

    def check(self) -> None:
        """The captioner and writer the config names exist (cheap: no model loads), so a bad name fails before
        the editor's weights load."""
        from eve.data.captions import make_captioner
        from eve.data.instructions import check_writer

        check_writer(self.cfg.writer, llm_model=self.cfg.llm_model, llm_url=self.cfg.llm_url, field="edit.writer")
        if self.cfg.captioner:
            make_captioner(self.cfg.captioner, "edit.captioner", check_only=True)

    def __call__(self, frame: Tensor, instruction: str, caption: str | None = None,
                 task: str | None = None) -> tuple[str, str]:
        """(task, output caption) for an edit: the given ones, else the task from the instruction (eve.tasks' rules,
        or the writer's reply with `edit.task_from=writer`) and the caption the writer gives the instruction applied
        to the captioner's reading of `frame` (the data stage's captioners and writers). Every choice is logged."""
        from eve.tasks import predict_task

        cfg = self.cfg
        written = None
        want_caption = not (caption and caption.strip())
        if want_caption and not cfg.captioner:
            logger.info("no output caption given and no edit.captioner set: the backbone sees the instruction as "
                        "its caption (give --caption, or set edit.captioner)")
        if (want_caption and cfg.captioner) or (task is None and cfg.task_from == "writer"):
            written = self._write(frame, instruction)
        if want_caption:
            caption = written["output_caption"] if written and cfg.captioner else instruction
        if task is None:
            if cfg.task_from == "writer" and written is not None:
                task, why = written["task"], f"from the {cfg.writer} writer"
            else:
                guess = predict_task(instruction)
                task, why = guess.task, guess.reason
            logger.info("task: %s (%s; --task overrides)", task, why)
        task_id(task)
        return task, caption.strip()

    def _write(self, frame: Tensor, instruction: str) -> dict | None:
        """The writer's {"task", "output_caption"} for the instruction applied to the frame's caption (the
        captioner's reading, or UNKNOWN_SOURCE without one), None when every reply was rejected."""
        from eve.data.captions import make_captioner
        from eve.data.instructions import make_writer, write_edit

        cfg = self.cfg
        if self._writer is None:
            self._captioner = make_captioner(cfg.captioner, "edit.captioner") if cfg.captioner else None
            self._writer = make_writer(cfg.writer, llm_model=cfg.llm_model, llm_url=cfg.llm_url, seed=cfg.seed,
                                       field="edit.writer")
        source = UNKNOWN_SOURCE
        if self._captioner is not None:
            source = self._captioner(((frame.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy())
        written, reasons = write_edit(self._writer, source, instruction, cfg.llm_retries)
        if written is None:
            logger.info("input caption %r; the %s writer gave no usable reply (%s): the backbone sees the "
                        "instruction", source, cfg.writer, "; ".join(reasons))
            return None
        logger.info("input caption %r -> output caption %r, task %s (%s writer)", source, written["output_caption"],
                    written["task"], cfg.writer)
        return written
