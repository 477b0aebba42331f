"""The seven Emu Edit tasks used by FDD's unsupervised dataset (paper §4 "Unsupervised Dataset"), and the rules that
read a task from an instruction alone.

The order is the task id fed to an edit adapter with task embeddings (diffusers `num_class_embeds`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eve.errors import EveError

TASKS: tuple[str, ...] = ("add", "remove", "background", "texture", "local", "style", "global")


def task_id(task: str) -> int:
    """Index of a task name (case-insensitive); an unknown name is a user error listing the valid ones."""
    name = task.strip().lower()
    if name not in TASKS:
        raise EveError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")
    return TASKS.index(name)


_COLOURS = ("red|green|blue|yellow|orange|purple|violet|pink|white|black|grey|gray|brown|gold|golden|silver|cyan|"
            "magenta|teal|beige|turquoise")
# (task, pattern) in order: the first rule that matches names the task. Emu Edit predicts the task with a learned
# classifier; these rules are its offline stand-in. Order matters where words overlap: "remove the background" is a
# removal, "make the background striped" a background edit, "made of wood" a texture even after "look like", and a
# colour word is a local edit only when nothing more specific matched.
RULES: tuple[tuple[str, re.Pattern], ...] = tuple((task, re.compile(p)) for task, p in (
    ("remove", r"\b(remove|delete|erase|eliminate|get rid of|take (\w+ ){0,3}(out|away|off)|without|disappear|"
               r"clear (\w+ ){0,3}(off|out|away))\b"),
    ("background", r"\b(background|backdrop|scenery|surroundings|in front of)\b"),
    ("add", r"^(please )?(add|insert|put|place|include|draw|attach|let|have)\b|\bthere should be\b"),
    ("style", r"\b(style|painting|painted|paint(ed)? like|sketch|drawing|drawn|watercolou?r|cartoon|anime|pixel art|"
              r"comic|mosaic|negative|oil|charcoal|claymation|illustration|engraving|pastel|impressionis\w*|"
              r"render(ed)? (it )?as|art)\b"),
    ("texture", r"\b(made (of|from|out of)|out of|carved|texture[ds]?|striped|stripes|checked|checkered|"
                r"checkerboard|dotted|dots|pattern(ed)?|print|knitted|wool|wooden|wood|marble|metal(lic)?|glass|"
                r"furry|fur|porcelain|leather|denim|stone|gold(en)? surface)\b"),
    ("global", r"\b(night|nighttime|daytime|day|dawn|dusk|sunset|sunrise|winter|summer|autumn|fall|spring|snow\w*|"
               r"rain\w*|fog\w*|mist\w*|storm\w*|weather|season|brighter|darker|whole (scene|image|video))\b|"
               r"^make it\b"),
    ("local", rf"\b({_COLOURS}|colou?r(ed)?|recolou?r|paint|tint)\b"),
))
FALLBACK = "global"


@dataclass(frozen=True)
class TaskGuess:
    task: str
    reason: str  # the rule that matched, for the log


def predict_task(instruction: str) -> TaskGuess:
    """The task an instruction asks for, by the first matching rule (RULES); `global` when none matches."""
    text = " ".join(instruction.lower().split())
    for task, pattern in RULES:
        m = pattern.search(text)
        if m:
            return TaskGuess(task, f"rule {task!r} matched {m.group(0)!r}")
    return TaskGuess(FALLBACK, f"no rule matched: {FALLBACK}")
