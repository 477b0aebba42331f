"""How well does eve read the task from an instruction alone (issue 11)? Per-task accuracy of eve.tasks' rules on:

* the data stage's template instructions (eve.data.instructions.TemplateWriter.PHRASES, which the rules were
  written against),
* the shapes world's instructions (world.edit, 100 scenes x 7 tasks),
* a held-out set of paraphrases (bench/data/task_paraphrases.csv, 10 per task, written before the rules were
  measured on them and not tuned to them afterwards).

    python bench/task_prediction.py
"""

from __future__ import annotations

import csv
import random
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eve.data.instructions import TemplateWriter  # noqa: E402
from eve.tasks import TASKS, predict_task  # noqa: E402
from eve.worlds.shapes import world as W  # noqa: E402

PARAPHRASES = Path(__file__).with_name("data") / "task_paraphrases.csv"


def sets() -> dict[str, list[tuple[str, str]]]:
    rng = random.Random(0)
    world = []
    for _ in range(100):
        scene = W.source_scene(rng)
        world += [(task, W.edit(scene, task, rng)[0]) for task in TASKS]
    with open(PARAPHRASES) as f:
        held_out = [(r["task"], r["instruction"]) for r in csv.DictReader(f)]
    templates = [(task, phrase) for task, phrases in TemplateWriter.PHRASES.items() for phrase, _ in phrases]
    return {"data-stage templates": templates, "shapes world": world, "held-out paraphrases": held_out}


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(prog="bench/task_prediction.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    rows, confusions = [], Counter()
    for name, items in sets().items():
        right, total = Counter(), Counter()
        for task, instruction in items:
            guess = predict_task(instruction).task
            total[task] += 1
            right[task] += guess == task
            if guess != task and name == "held-out paraphrases":
                confusions[task, guess] += 1
        cells = [f"{right[t] / total[t]:.2f}" if total[t] else "-" for t in TASKS]
        rows.append(f"| {name} | {len(items)} | {sum(right.values()) / len(items):.3f} | " + " | ".join(cells) + " |")
    print("| set | n | accuracy | " + " | ".join(TASKS) + " |")
    print("|---|---:|---:|" + "---:|" * len(TASKS))
    print("\n".join(rows))
    print("\nheld-out errors (true -> predicted): "
          + ", ".join(f"{a} -> {b} x{n}" for (a, b), n in confusions.most_common()))
    print("\n" + world_captions())
    return 0


def world_captions(scenes: int = 200) -> str:
    """The shapes world's own captioner and writer (edit.captioner / edit.writer of its eve.yaml) on first frames:
    how often they give the world's own captions."""
    import json

    from eve.worlds.shapes.captioner import Captioner, Writer

    def objects(caption: str) -> tuple:
        head, _, background = caption.rpartition(" on ")
        return tuple(sorted(head.split(" and "))), background

    rng, captioner, writer = random.Random(1), Captioner(), Writer()
    same_set = exact = written = 0
    for _ in range(scenes):
        scene = W.source_scene(rng)
        read, truth = captioner(W.render(scene, 0)), W.caption(scene)
        same_set += objects(read) == objects(truth)
        exact += read == truth
        for task in TASKS:
            instruction, target = W.edit(scene, task, rng)
            reply = json.loads(writer.edit(read, instruction, 0))
            written += reply.get("output_caption") == W.caption(target)
    n = scenes * len(TASKS)
    return (f"shapes-world captioner on {scenes} first frames: same objects and background as the world's caption "
            f"{same_set / scenes:.3f}, same text (order too) {exact / scenes:.3f}; output caption written from its "
            f"reading equal to the world's {written / n:.3f} ({n} instructions)")


if __name__ == "__main__":
    sys.exit(main())
