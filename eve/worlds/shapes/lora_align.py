"""LoRA alignment in the shapes world (paper §4.4): a style LoRA the world's backbone lacks, its data, its measure.

The style ("washed out", `stylise`): every pixel x -> 0.6 x + 0.35, a lighter, low-contrast palette no teacher saw
(the backbone's own styles are plain, negative and night). `write_style_images` renders a few training-side scenes
in it, with their plain world captions, for `python -m eve.train.dreambooth` (the LoRA then draws every caption in
the style); `write_manifest` writes LoRA alignment's captions-only manifest from training-side source scenes and the
world's own edits (the world's grammar edits a scene, not a caption, so it stands in for `eve.data.triplets`' writers) (TASKS: the object and background edits, where the style must survive the edit; the world's two
global styles would replace it).

The measure (`score`), on held-out scenes whose stylised frame 0 is the input: edit success is the world's parser
(`measure.frame_success`) on the output mapped back out of the style (`unstylise`) or as it is, so it does not
depend on the style; style fidelity is whether, where the edit leaves the scene as it was, the output is nearer the
stylised source than the plain one; combined = both at once.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from pathlib import Path

import pandas as pd
from torch import Tensor

from eve.data.manifest import write_table
from eve.worlds.shapes import measure
from eve.worlds.shapes import world as W
from eve.worlds.shapes.data import Item, draw, held_out_items

GAIN, OFFSET = 0.6, 0.35
TASKS = ("add", "remove", "background", "texture", "local")


def stylise(x: Tensor) -> Tensor:
    return x * GAIN + OFFSET


def unstylise(y: Tensor) -> Tensor:
    return ((y - OFFSET) / GAIN).clamp(-1, 1)


def write_style_images(out: str | os.PathLike, count: int = 16, seed: int = 0) -> Path:
    """`count` stylised training-side backbone scenes (plain style, frame 0) as PNGs with a metadata.jsonl of their
    plain captions (diffusers' training-script layout, which eve.train.dreambooth reads)."""
    from PIL import Image

    from eve.data.video import to_uint8

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    meta = []
    for i in range(count):
        scene = draw(lambda r: replace(W.backbone_scene(r), style="plain"), rng)
        name = f"{i:03d}.png"
        Image.fromarray(to_uint8(stylise(W.render(scene, 0))[None])[0]).save(out / name)
        meta.append({"file_name": name, "text": W.caption(scene)})
    (out / "metadata.jsonl").write_text("".join(json.dumps(m) + "\n" for m in meta))
    return out


def items(seed: int, num_scenes: int, test: bool = False) -> list[Item]:
    """Source scenes on one side of the split, each with every task of TASKS (frame 0 is what is edited)."""
    rng = random.Random(seed)
    out = []
    for c in range(num_scenes):
        src = draw(W.source_scene, rng, test)
        for task in TASKS:
            instruction, tgt = W.edit(src, task, rng)
            out.append(Item(c, task, src, tgt, instruction, W.caption(tgt), W.caption(src)))
    return out


def write_manifest(out: str | os.PathLike, num_scenes: int = 60, seed: int = 0) -> Path:
    """LoRA alignment's manifest (input_caption, instruction, caption, task, id) from training-side scenes."""
    rows = [{"input_caption": it.input_caption, "instruction": it.instruction, "caption": it.caption,
             "task": it.task, "id": f"{it.clip:05d}-{it.task}"} for it in items(seed, num_scenes)]
    return write_table(pd.DataFrame(rows), Path(out) / "manifest.jsonl")


def _shows_at_frame_0(it: Item) -> bool:
    """Does the edit change frame 0 visibly (>= 12 pixels, grain aside)? An object hidden at frame 0 has nothing to
    score."""
    return int((measure.structure_change(it.source, it.target, 0) > 0.1).sum()) >= 12


def test_items(num_scenes: int = 30) -> list[Item]:
    """Held-out scenes (no teacher, LoRA or alignment run saw them), every task of TASKS each; a scene is kept only
    when every one of its edits shows at frame 0, the one frame this measure reads."""
    by_clip: dict[int, list[Item]] = {}
    for it in held_out_items(2 * num_scenes + 7, all_tasks=True):
        if it.task in TASKS:
            by_clip.setdefault(it.clip, []).append(it)
    kept = [its for its in by_clip.values() if all(_shows_at_frame_0(it) for it in its)]
    if len(kept) < num_scenes:
        raise ValueError(f"only {len(kept)} held-out scenes show every edit at frame 0; asked for {num_scenes}")
    return [it for its in kept[:num_scenes] for it in its]


def score(frame: Tensor, it: Item) -> dict:
    """Edit success, style fidelity and combined for one output frame [3, S, S] of item `it` (input: the stylised
    frame 0 of it.source)."""
    success = any(measure.frame_success(f, 0, it.task, it.source, it.target, it.added)
                  for f in (unstylise(frame), frame))  # read in the style or out of it: success is style-blind
    src = W.render(it.source, 0)
    unchanged = measure.structure_change(it.source, it.target, 0) < 0.05  # where the edit leaves the scene as it was
    if int(unchanged.sum()) < 16:
        styled = False
    else:
        near = lambda ref: float((frame - ref).abs().amax(0)[unchanged].mean())  # noqa: E731
        styled = near(stylise(src)) < near(src)
    return {"success": float(success), "style": float(styled), "combined": float(success and styled)}
