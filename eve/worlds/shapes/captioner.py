"""The shapes world's own captioner and caption writer, for editing with an instruction alone (issue 11).

Real footage gets its input caption from an image-to-text model and its output caption from an instruction writer
(eve/data/captions.py, eve/data/instructions.py). This world has neither model, but it has a pixel parser and a
grammar, so it supplies both, behind the same interfaces (`edit.captioner` / `edit.writer` in its eve.yaml):

* `Captioner`: reads a frame as the world's captions read (`world.caption`): the background is the palette
  colour nearest the frame's border, each object a palette colour covering enough pixels, its shape told by how
  much of its bounding box it fills (square ~1, circle ~0.79, triangle ~0.5). Objects are listed largest first (the
  parser cannot see draw order); patterns and styles are not read (the world's source clips have none).
* `Writer`: applies one of the world's instructions (`world.edit`'s grammar) to a caption in that grammar and
  answers as the instruction writers do, `{"task": ..., "output_caption": ...}`; an instruction outside the grammar
  is rejected with its reason, so the caller falls back as it would for a model's bad reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from eve.worlds.shapes import world as W

MIN_PIXELS = 12  # an object's visible pixels (the smallest, side 9, half hidden, still shows ~20)
SQUARE_FILL, CIRCLE_FILL = 0.9, 0.66  # bounding-box fill above these reads as square, circle; below: triangle
_COLOUR_TOL = 0.4


def _to_tensor(frame) -> torch.Tensor:
    """[3, H, W] in [-1, 1] from a tensor in that form or a uint8 HxWx3 array (what the data stage passes)."""
    if isinstance(frame, np.ndarray):
        return torch.from_numpy(frame).permute(2, 0, 1).float() / 127.5 - 1
    return frame.float()


class Captioner:
    """frame -> caption in the world's grammar (see the module docstring)."""

    def __call__(self, frame) -> str:
        x = _to_tensor(frame)
        border = torch.cat([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], dim=1).median(dim=1).values
        background = min(W.BACKGROUNDS, key=lambda b: float((torch.tensor(W.BACKGROUNDS[b]) - border).norm()))
        found = []
        for colour, rgb in W.COLOURS.items():
            mask = (x - torch.tensor(rgb).view(3, 1, 1)).pow(2).mean(0).sqrt() < _COLOUR_TOL
            if int(mask.sum()) < MIN_PIXELS:
                continue
            ys, xs = mask.nonzero(as_tuple=True)
            box = (int(ys.max() - ys.min()) + 1) * (int(xs.max() - xs.min()) + 1)
            fill = int(mask.sum()) / box
            shape = "square" if fill >= SQUARE_FILL else "circle" if fill >= CIRCLE_FILL else "triangle"
            found.append((int(mask.sum()), colour, shape))
        objs = [f"a {colour} {shape}" for _, colour, shape in sorted(found, reverse=True)]
        bg = f"a {background} background"
        return f"{' and '.join(objs)} on {bg}" if objs else bg


@dataclass
class Parsed:
    """A caption in the world's grammar: objects (colour, pattern or None, shape), background, its pattern, style."""

    objects: list[tuple[str, str | None, str]] = field(default_factory=list)
    background: str = "grey"
    bg_pattern: str | None = None
    style: str = "plain"
    style_pattern: str | None = None  # the pattern a negative is printed with

    def text(self) -> str:
        objs = [f"a {c}{' ' + p if p else ''} {s}" for c, p, s in self.objects]
        bg = f"a {self.background}{' ' + self.bg_pattern if self.bg_pattern else ''} background"
        text = f"{' and '.join(objs)} on {bg}" if objs else bg
        return {"negative": f"a {self.style_pattern} negative of {text}", "night": f"{text} at night"}.get(
            self.style, text)


_WORD = {"colour": "|".join(W.COLOURS), "shape": "|".join(W.SHAPES), "pattern": "|".join(W.PATTERNS),
         "bg": "|".join(W.BACKGROUNDS)}
_OBJ = re.compile(r"^an? ({colour})(?: ({pattern}))? ({shape})$".format(**_WORD))
_BG = re.compile(r"^an? ({bg})(?: ({pattern}))? background$".format(**_WORD))
_NEGATIVE = re.compile(r"^an? ({pattern}) negative of (.*)$".format(**_WORD))


def parse_caption(caption: str) -> Parsed | None:
    text, style, printed = caption.strip().lower(), "plain", None
    if m := _NEGATIVE.match(text):
        printed, text, style = m.group(1), m.group(2), "negative"
    elif text.endswith(" at night"):
        text, style = text.removesuffix(" at night"), "night"
    objs_text, _, bg_text = text.rpartition(" on ") if " on " in text else ("", "", text)
    bg = _BG.match(bg_text)
    objs = [_OBJ.match(o) for o in objs_text.split(" and ")] if objs_text else []
    if bg is None or not all(objs):
        return None
    return Parsed([m.groups() for m in objs], bg.group(1), bg.group(2), style, printed)


def apply(parsed: Parsed, instruction: str) -> tuple[str, Parsed] | None:
    """(task, edited caption) for an instruction in `world.edit`'s grammar, None outside it."""
    ins = " ".join(instruction.lower().split())
    p = replace(parsed, objects=list(parsed.objects))

    def find(colour: str, shape: str) -> int | None:
        return next((i for i, (c, _, s) in enumerate(p.objects) if (c, s) == (colour, shape)), None)

    if m := re.fullmatch(r"add an? ({colour}) ({shape})".format(**_WORD), ins):
        p.objects.append((m.group(1), None, m.group(2)))
        return "add", p
    if m := re.fullmatch(r"remove the ({colour}) ({shape})".format(**_WORD), ins):
        i = find(*m.groups())
        return None if i is None else ("remove", replace(p, objects=p.objects[:i] + p.objects[i + 1:]))
    if m := re.fullmatch(r"make the background ({pattern})".format(**_WORD), ins):
        p.bg_pattern = m.group(1)
        return "background", p
    if m := re.fullmatch(r"make the ({colour}) ({shape}) ({pattern}|{colour})".format(**_WORD), ins):
        i = find(m.group(1), m.group(2))
        if i is None:
            return None
        c, _, s = p.objects[i]
        if m.group(3) in W.PATTERNS:
            p.objects[i] = (c, m.group(3), s)
            return "texture", p
        p.objects[i] = (m.group(3), None, s)
        return "local", p
    if m := re.fullmatch(r"make it an? ({pattern}) negative".format(**_WORD), ins):
        p.style, p.style_pattern = "negative", m.group(1)
        return "style", p
    if ins == "make it night":
        p.style, p.style_pattern = "night", None
        return "global", p
    return None


class Writer:
    """The world's instruction writer for one instruction (`edit(caption, instruction, attempt)`, as
    eve.data.instructions' writers): the task and output caption its grammar gives, as a JSON reply."""

    def edit(self, caption: str, instruction: str, attempt: int) -> str:
        parsed = parse_caption(caption)
        if parsed is None:
            return json.dumps({"error": f"caption outside the shapes grammar: {caption!r}"})
        done = apply(parsed, instruction)
        if done is None:
            return json.dumps({"error": f"instruction outside the shapes grammar: {instruction!r}"})
        task, edited = done
        return json.dumps({"task": task, "output_caption": edited.text()})
