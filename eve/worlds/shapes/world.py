"""Scenes, rendering, captions and the seven edits of the shapes world. Pure (torch + stdlib).

A scene is a background colour, up to two objects (shape, colour, size, position, velocity, striped or not) and a
global style (plain, negative, night). Objects move in straight lines and bounce off the borders, so a scene is a
video. Every edit maps a source scene to a target scene with the same motion, so the ground-truth edited video is
the target rendered over the same frames; "add" places its object freely, and is checked by the parser instead.

Pixels are in [-1, 1]; frames are [3, SIZE, SIZE], videos [F, 3, SIZE, SIZE].
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
from torch import Tensor

SIZE = 16
COLOURS = {"red": (0.9, -0.8, -0.8), "green": (-0.8, 0.8, -0.8), "blue": (-0.8, -0.6, 0.9), "yellow": (0.9, 0.8, -0.8)}
BACKGROUNDS = {"black": (-0.9, -0.9, -0.9), "white": (0.9, 0.9, 0.9), "grey": (0.0, 0.0, 0.0)}
SHAPES = ("square", "circle", "triangle")
SIZES = {"small": 5, "large": 7}
STYLES = ("plain", "negative", "night")


def stripe_colour(colour: tuple[float, float, float]) -> tuple[float, ...]:
    """Odd rows of a striped object: a dark version of its colour, far (>= 0.85) from every background."""
    return tuple(0.5 * c - 0.45 for c in colour)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    x: float  # top-left corner at frame 0
    y: float
    vx: float = 0.0  # pixels per frame
    vy: float = 0.0
    striped: bool = False

    @property
    def side(self) -> int:
        return SIZES[self.size]

    def position(self, t: int) -> tuple[int, int]:
        """Top-left corner at frame t, bouncing off the borders."""
        return _bounce(self.x + self.vx * t, SIZE - self.side), _bounce(self.y + self.vy * t, SIZE - self.side)

    def centre(self, t: int) -> tuple[float, float]:
        x, y = self.position(t)
        return x + (self.side - 1) / 2, y + (self.side - 1) / 2


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]
    style: str = "plain"


def _bounce(p: float, hi: int) -> int:
    if hi <= 0:
        return 0
    period = 2 * hi
    p = p % period
    return int(round(p if p <= hi else period - p))


def shape_mask(shape: str, side: int) -> Tensor:
    """[side, side] bool."""
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    c = (side - 1) / 2
    if shape == "square":
        return torch.ones(side, side, dtype=torch.bool)
    if shape == "circle":
        return (xs - c) ** 2 + (ys - c) ** 2 <= (side / 2) ** 2 - 0.25
    if shape == "triangle":  # apex up: row r spans a width growing linearly to the full base
        half = (ys.float() + 1) / side * (side / 2)
        return (xs - c).abs() <= half - 0.25
    raise ValueError(f"unknown shape {shape!r}")


def stylise(frame: Tensor, style: str) -> Tensor:
    if style == "plain":
        return frame
    if style == "negative":
        return -frame
    if style == "night":
        return (frame + 1) * 0.35 - 1
    raise ValueError(f"unknown style {style!r}")


def render(scene: Scene, t: int) -> Tensor:
    """Frame t of a scene, [3, SIZE, SIZE]."""
    img = torch.tensor(BACKGROUNDS[scene.background]).view(3, 1, 1).repeat(1, SIZE, SIZE)
    for o in scene.objects:
        x, y = o.position(t)
        m = shape_mask(o.shape, o.side)
        colour = torch.tensor(COLOURS[o.colour]).view(3, 1, 1)
        patch = colour.expand(3, o.side, o.side).clone()
        if o.striped:
            patch[:, 1::2] = torch.tensor(stripe_colour(COLOURS[o.colour])).view(3, 1, 1)
        region = img[:, y : y + o.side, x : x + o.side]
        region[:, m] = patch[:, m]
    return stylise(img, scene.style)


def render_video(scene: Scene, num_frames: int) -> Tensor:
    return torch.stack([render(scene, t) for t in range(num_frames)])


def describe(o: Obj) -> str:
    return f"a {o.size}{' striped' if o.striped else ''} {o.colour} {o.shape}"


def caption(scene: Scene) -> str:
    if scene.objects:
        text = " and ".join(describe(o) for o in scene.objects) + f" on a {scene.background} background"
    else:
        text = f"an empty {scene.background} background"
    if scene.style == "negative":
        return "a negative of " + text
    if scene.style == "night":
        return text + " at night"
    return text


def random_object(rng: random.Random, moving: bool = True, **fixed) -> Obj:
    size = fixed.get("size", rng.choice(list(SIZES)))
    side = SIZES[size]
    speed = lambda: rng.choice([-1.0, -0.5, 0.5, 1.0]) if moving else 0.0  # noqa: E731
    return Obj(
        shape=fixed.get("shape", rng.choice(SHAPES)),
        colour=fixed.get("colour", rng.choice(list(COLOURS))),
        size=size,
        x=rng.uniform(0, SIZE - side),
        y=rng.uniform(0, SIZE - side),
        vx=speed(),
        vy=speed(),
        striped=fixed.get("striped", False),
    )


def source_scene(rng: random.Random) -> Scene:
    """What FDD and the test set start from: one plain moving object."""
    return Scene(rng.choice(list(BACKGROUNDS)), (random_object(rng),))


def backbone_scene(rng: random.Random) -> Scene:
    """The text-to-image distribution: every state an edit can produce (empty, two objects, striped, styles)."""
    bg = rng.choice(list(BACKGROUNDS))
    n = rng.choices([0, 1, 2], weights=[1, 6, 3])[0]
    objs = []
    for _ in range(n):
        o = random_object(rng, striped=rng.random() < 0.25)
        if objs and o.colour == objs[0].colour:  # two objects are told apart by colour
            o = replace(o, colour=rng.choice([c for c in COLOURS if c != objs[0].colour]))
        objs.append(o)
    style = rng.choices(STYLES, weights=[6, 1, 1])[0]
    return Scene(bg, tuple(objs), style)


def overlap_frames(a: Obj, b: Obj, num_frames: int) -> int:
    """Frames in which the two objects' boxes (plus a one-pixel margin) touch."""
    n = 0
    for t in range(num_frames):
        (ax, ay), (bx, by) = a.position(t), b.position(t)
        if ax - 1 < bx + b.side and bx - 1 < ax + a.side and ay - 1 < by + b.side and by - 1 < ay + a.side:
            n += 1
    return n


def edit(scene: Scene, task: str, rng: random.Random, num_frames: int = 8) -> tuple[str, Scene]:
    """(instruction, target scene) for a one-object plain source scene. An added object is static and placed,
    among 20 random candidates, where it touches the moving one in the fewest of the clip's frames."""
    o = scene.objects[0]
    if task == "add":
        colour = rng.choice([c for c in COLOURS if c != o.colour])
        shape = rng.choice(SHAPES)
        candidates = [random_object(rng, moving=False, size="small", colour=colour, shape=shape) for _ in range(20)]
        new = min(candidates, key=lambda c: overlap_frames(o, c, num_frames))
        return f"add a {new.colour} {new.shape}", replace(scene, objects=(o, new))
    if task == "remove":
        return f"remove the {o.colour} {o.shape}", replace(scene, objects=())
    if task == "background":
        bg = rng.choice([b for b in BACKGROUNDS if b != scene.background])
        return f"make the background {bg}", replace(scene, background=bg)
    if task == "texture":
        return f"make the {o.shape} striped", replace(scene, objects=(replace(o, striped=True),))
    if task == "local":
        c = rng.choice([c for c in COLOURS if c != o.colour])
        return f"make the {o.shape} {c}", replace(scene, objects=(replace(o, colour=c),))
    if task == "style":
        return "make it a photo negative", replace(scene, style="negative")
    if task == "global":
        return "make it night", replace(scene, style="night")
    raise ValueError(f"unknown task {task!r}")


VOCABULARY = sorted(
    set(" ".join(
        [" ".join(COLOURS), " ".join(BACKGROUNDS), " ".join(SHAPES), " ".join(SIZES),
         "a an and on background empty striped negative of at night make the it photo add remove"]
    ).split())
)
