"""Scenes, rendering, motion and the seven edits of the shapes world (issue 9: a world with the paper's premises).

A scene is a background (a colour with low-frequency shading, optionally a pattern), up to three objects (shape,
colour, size, bouncing motion, optionally a pattern) drawn in order, so later objects occlude earlier ones, a
camera pan that moves the background, and a global style. Patterns (stripes, checks, dots) are **random fields**,
not periodic ones: a random period, orientation and phase, and, cell by cell, a random stripe width, a random
check colour or a random dot (present or not, jittered). Every local detail is its own random draw, as real
texture is, so a sampler that has not resolved the noise cannot infer it from the rest of the surface and
averages it (the hypothesis: a periodic pattern has two free numbers, which three steps can pin). Patterns live
in the coordinates of what they cover: an object's pattern moves with the object, the background's with the
camera. Every pixel's motion is therefore known exactly (`previous_pixel`).

Styles are global, palette and texture together: "negative" inverts the palette and prints a pattern over every
surface ("make it a striped negative"); "night" darkens the palette and scatters stars (a dotted field) over the
sky (the background).

Edits are **one-to-many** where the real ones are: re-texturing an object, patterning the background, adding an
object anywhere and the two styles draw the pattern (or the position) afresh for every pair, so a per-frame editor
draws a different pattern in every frame (the flicker FDD fixes), and few-step sampling that averages the modes
loses the pattern's contrast. Removing and recolouring are one-to-one and have a pixel target (up to the grain).

Every surface carries **grain** (added after gate 3 failed on three worlds): a fixed-amplitude random
luminance field in GRAIN_CELL-pixel cells, in the surface's own coordinates, so it moves with the surface and a
video's grain is consistent. Every edit draws the grain afresh (as an image editor regenerates fine detail
everywhere, not only where it was asked), so every edit, one-to-one ones included, must render detail it cannot
copy from its input: a per-frame editor flickers everywhere, and a sampler that has not resolved the noise averages
the grain away in every frame, a blur a critic can see without the pair (the hypothesis this world tests). The
amplitude stays well under the parser's pattern threshold, so grain never reads as a pattern.

Pixels are in [-1, 1] (clamped: grain on the darkest shading would reach about -1.05); frames are [3, SIZE, SIZE],
videos [F, 3, SIZE, SIZE]. Positions and pan offsets are whole pixels at every frame, so the ground truth's own warp
error is exactly zero.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import torch
from torch import Tensor

SIZE = 32
NUM_FRAMES = 8
COLOURS = {"red": (0.85, -0.7, -0.7), "green": (-0.7, 0.75, -0.7), "blue": (-0.7, -0.45, 0.85),
           "yellow": (0.85, 0.75, -0.75)}
BACKGROUNDS = {"black": (-0.8, -0.8, -0.8), "white": (0.75, 0.75, 0.75), "grey": (0.0, 0.0, 0.0)}
SHAPES = ("square", "circle", "triangle")
PATTERNS = ("striped", "checked", "dotted")
STYLES = ("plain", "negative", "night")
SIDES = (9, 14)  # object side range in pixels (inclusive)
PERIODS = (4.0, 7.0)  # pattern period range in pixels
SPEEDS = (-1.5, -1.0, -0.5, 0.5, 1.0, 1.5)
PANS = (-1.0, -0.5, 0.0, 0.5, 1.0)
SHADE = 0.15  # amplitude of the background's low-frequency shading (makes the pan visible)
GRAIN = 0.1  # grain: luminance uniform in [-GRAIN, GRAIN] (std 0.058; a plain surface stays under PATTERN_STD)
GRAIN_CELL = 2  # grain cell side in pixels: one latent cell of the ds2 autoencoder


STAR = (0.7, 0.7, 0.45)  # the colour of night's stars


@dataclass(frozen=True)
class Pattern:
    kind: str  # one of PATTERNS
    period: float
    angle: float  # radians
    phase: tuple[float, float]  # in periods, along the pattern's two axes
    seed: int = 0  # the cell-by-cell draws (stripe widths, check colours, dots)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    side: int
    x: float  # top-left corner at frame 0
    y: float
    vx: float = 0.0  # pixels per frame
    vy: float = 0.0
    pattern: Pattern | None = None

    def position(self, t: int) -> tuple[int, int]:
        """Top-left corner at frame t, bouncing off the borders, in whole pixels."""
        hi = SIZE - self.side
        return _bounce(self.x + self.vx * t, hi), _bounce(self.y + self.vy * t, hi)


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]
    pan: tuple[float, float] = (0.0, 0.0)  # camera velocity, pixels per frame
    shade: tuple[float, float, float, float] = (30.0, 26.0, 0.0, 0.0)  # periods (x, y) and phases of the shading
    bg_pattern: Pattern | None = None
    style: str = "plain"
    style_pattern: Pattern | None = None  # negative: printed over every surface; night: the stars
    grain: int | None = None  # the grain's seed (None: no grain); each object's grain derives from it and its colour

    def offset(self, t: int) -> tuple[int, int]:
        """Camera offset at frame t (whole pixels): screen x shows world x + offset."""
        return int(round(self.pan[0] * t)), int(round(self.pan[1] * t))


def _bounce(p: float, hi: int) -> int:
    if hi <= 0:
        return 0
    period = 2 * hi
    p = p % period
    return int(round(p if p <= hi else period - p))


def _grid(size: int) -> tuple[Tensor, Tensor]:
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    return xs, ys


def shape_mask(shape: str, side: int) -> Tensor:
    """[side, side] bool."""
    xs, ys = _grid(side)
    c = (side - 1) / 2
    if shape == "square":
        return torch.ones(side, side, dtype=torch.bool)
    if shape == "circle":
        return (xs - c) ** 2 + (ys - c) ** 2 <= (side / 2) ** 2 - 0.25
    if shape == "triangle":  # apex up: row r spans a width growing linearly to the full base
        half = (ys + 1) / side * (side / 2)
        return (xs - c).abs() <= half - 0.25
    raise ValueError(f"unknown shape {shape!r}")


def _uniform(i: Tensor, j: Tensor, seed: int) -> Tensor:
    """A uniform draw in [0, 1) per integer cell (i, j): an integer hash, exact on every machine."""
    h = (i * 73856093) ^ (j * 19349663) ^ (seed * 83492791)
    h = (h ^ (h >> 13)) * 1274126177  # int64 products wrap (two's complement); kept: the teachers learnt these fields
    h = h ^ (h >> 16)
    return (h & 0xFFFF).float() / 65536


def pattern_weight(p: Pattern, u: Tensor, v: Tensor) -> Tensor:
    """Ink weight in [0, 1] of a pattern at coordinates (u, v) (pixels, in the patterned thing's own frame).

    striped: one stripe per period, its width drawn per stripe (0.3-0.7 of the period); checked: a checkerboard of
    half-period cells, each flipped with probability 0.3; dotted: one dot per period cell, present with probability
    0.9, its centre jittered.
    """
    ca, sa = math.cos(p.angle), math.sin(p.angle)
    a = (u * ca + v * sa) / p.period + p.phase[0]
    b = (-u * sa + v * ca) / p.period + p.phase[1]
    if p.kind == "striped":
        k = torch.floor(a)
        f = a - k
        width = 0.3 + 0.4 * _uniform(k.long(), torch.zeros_like(k).long(), p.seed)
        inside = torch.minimum(f, width - f) * p.period  # signed distance into the stripe, pixels
        return (inside + 0.5).clamp(0, 1)  # a pixel's coverage
    if p.kind == "checked":  # a checkerboard with cells flipped at random, so even a small surface shows both inks
        i, j = torch.floor(2 * a).long(), torch.floor(2 * b).long()
        return (((i + j) % 2 == 0) ^ (_uniform(i, j, p.seed) < 0.3)).float()
    if p.kind == "dotted":
        i, j = torch.floor(a).long(), torch.floor(b).long()
        present = (_uniform(i, j, p.seed) < 0.9).float()
        ca_, cb_ = i + 0.3 + 0.4 * _uniform(i, j, p.seed + 1), j + 0.3 + 0.4 * _uniform(i, j, p.seed + 2)
        return present * torch.sigmoid((0.3 - ((a - ca_) ** 2 + (b - cb_) ** 2).sqrt()) * 12)
    raise ValueError(f"unknown pattern {p.kind!r}")


def ink(colour: Tensor) -> Tensor:
    """The pattern's second colour on a surface of `colour` [3, ...]: far from it (dark on light, light on dark)."""
    return torch.where(colour.mean(0, keepdim=True) > 0, 0.45 * colour - 0.55, 0.35 * colour + 0.6)


def overlay(surface: Tensor, pattern: Pattern | None, u: Tensor, v: Tensor) -> Tensor:
    """[3, h, w] surface with a pattern inked over it at coordinates (u, v) (pixels, in the surface's frame)."""
    if pattern is None:
        return surface
    return surface + (ink(surface) - surface) * pattern_weight(pattern, u, v)


def _paint(base: tuple[float, ...], pattern: Pattern | None, u: Tensor, v: Tensor) -> Tensor:
    """[3, h, w] surface of colour `base` with an optional pattern at coordinates (u, v)."""
    return overlay(torch.tensor(base).view(3, 1, 1).expand(3, *u.shape).clone(), pattern, u, v)


def grain(seed: int | None, u: Tensor, v: Tensor) -> Tensor:
    """[h, w] luminance grain at coordinates (u, v) (pixels, in the grained surface's frame); zero without a seed."""
    if seed is None:
        return torch.zeros_like(u)
    cell = _uniform(torch.floor(u / GRAIN_CELL).long(), torch.floor(v / GRAIN_CELL).long(), seed)
    return GRAIN * (2 * cell - 1)


def without_grain(scene: Scene) -> Scene:
    """The scene's structure: where an edit shows, compared grain aside (every edit redraws the grain)."""
    return replace(scene, grain=None)


def _object_grain(scene: Scene, o: Obj) -> int | None:
    """An object's grain seed: fixed by the scene's and the object's colour (unique in a scene), so it moves along."""
    return None if scene.grain is None else scene.grain + 1 + list(COLOURS).index(o.colour)


def palette(frame: Tensor, style: str) -> Tensor:
    if style == "plain":
        return frame
    if style == "negative":
        return -frame
    if style == "night":
        return (frame + 1) * 0.35 - 1 + torch.tensor([0.0, 0.05, 0.3]).view(3, 1, 1)
    raise ValueError(f"unknown style {style!r}")


def layers(scene: Scene, t: int) -> Tensor:
    """[SIZE, SIZE] long: 0 where the background shows, i + 1 where object i is the visible (topmost) one."""
    out = torch.zeros(SIZE, SIZE, dtype=torch.long)
    for i, o in enumerate(scene.objects):
        x, y = o.position(t)
        out[y : y + o.side, x : x + o.side][shape_mask(o.shape, o.side)] = i + 1
    return out


def render(scene: Scene, t: int, *, grain_scale: float = 1.0) -> Tensor:
    """Frame t of a scene, [3, SIZE, SIZE]. grain_scale multiplies the grain's amplitude (1: the world's; 0: the
    same frame without grain; bench/world/critic_ceiling.py draws the frames a few-step sampler that kept less would)."""
    xs, ys = _grid(SIZE)
    ox, oy = scene.offset(t)
    X, Y = xs + ox, ys + oy  # world coordinates of the background
    px, py, ph1, ph2 = scene.shade
    shading = SHADE * torch.sin(2 * math.pi * (X / px + ph1)) * torch.cos(2 * math.pi * (Y / py + ph2))
    printed = scene.style_pattern if scene.style == "negative" else None
    img = overlay(_paint(BACKGROUNDS[scene.background], scene.bg_pattern, X, Y) + shading, printed, X, Y)
    img = img + grain_scale * grain(scene.grain, X, Y)
    sky = torch.ones(SIZE, SIZE, dtype=torch.bool)
    for o in scene.objects:
        x, y = o.position(t)
        u, v = _grid(o.side)
        m = shape_mask(o.shape, o.side)
        region = img[:, y : y + o.side, x : x + o.side]
        surface = overlay(_paint(COLOURS[o.colour], o.pattern, u, v), printed, u, v)
        surface = surface + grain_scale * grain(_object_grain(scene, o), u, v)
        region[:, m] = surface[:, m]
        sky[y : y + o.side, x : x + o.side][m] = False
    img = palette(img, scene.style)
    if scene.style == "night":
        stars = pattern_weight(scene.style_pattern, X, Y) * sky
        img = img + (torch.tensor(STAR).view(3, 1, 1) - img) * stars
    return img.clamp(-1, 1)


def render_video(scene: Scene, num_frames: int = NUM_FRAMES, *, grain_scale: float = 1.0) -> Tensor:
    return torch.stack([render(scene, t, grain_scale=grain_scale) for t in range(num_frames)])


def previous_pixel(scene: Scene, t: int) -> tuple[Tensor, Tensor, Tensor]:
    """Where each pixel of frame t was at frame t-1: (x', y', valid) [SIZE, SIZE]. A pixel is valid when its
    surface point was on screen and visible (same layer on top) at t-1; disocclusions and borders are not."""
    lay_t, lay_p = layers(scene, t), layers(scene, t - 1)
    xs, ys = _grid(SIZE)
    xs, ys = xs.long(), ys.long()
    dx = torch.zeros(SIZE, SIZE, dtype=torch.long)
    dy = torch.zeros(SIZE, SIZE, dtype=torch.long)
    (ox, oy), (qx, qy) = scene.offset(t), scene.offset(t - 1)
    bg = lay_t == 0
    dx[bg], dy[bg] = ox - qx, oy - qy  # world point x + o(t) was at screen x + o(t) - o(t-1)
    for i, o in enumerate(scene.objects):
        (ax, ay), (bx, by) = o.position(t), o.position(t - 1)
        sel = lay_t == i + 1
        dx[sel], dy[sel] = bx - ax, by - ay  # object point at x was at x - (p(t) - p(t-1))
    xp, yp = xs + dx, ys + dy
    inside = (xp >= 0) & (xp < SIZE) & (yp >= 0) & (yp < SIZE)
    xc, yc = xp.clamp(0, SIZE - 1), yp.clamp(0, SIZE - 1)
    valid = inside & (lay_p[yc, xc] == lay_t)
    return xc, yc, valid


def warp_error(video: Tensor, scene: Scene, regions: Tensor | None = None) -> float:
    """Mean |frame_t - frame_{t-1} moved by the scene's known motion| over valid pixels (per pixel, on [-1, 1],
    channel mean), restricted to regions [F, S, S] (bool, at frame t) when given. Zero for the scene's own render;
    a pattern redrawn in each frame scores high."""
    total, count = 0.0, 0
    for t in range(1, video.shape[0]):
        xc, yc, valid = previous_pixel(scene, t)
        if regions is not None:
            valid = valid & regions[t]
        diff = (video[t] - video[t - 1][:, yc, xc]).abs().mean(0)
        total += float(diff[valid].sum())
        count += int(valid.sum())
    return total / max(count, 1)


# ---------------------------------------------------------------------------------------------- captions


def describe(o: Obj) -> str:
    return f"a {o.colour}{' ' + o.pattern.kind if o.pattern else ''} {o.shape}"


def caption(scene: Scene) -> str:
    bg = f"a {scene.background}{' ' + scene.bg_pattern.kind if scene.bg_pattern else ''} background"
    text = (" and ".join(describe(o) for o in scene.objects) + f" on {bg}") if scene.objects else bg
    if scene.style == "negative":
        return f"a {scene.style_pattern.kind} negative of {text}"
    if scene.style == "night":
        return text + " at night"
    return text


VOCABULARY = sorted(set(
    "a an and on background at night of negative photo make it the add remove give striped checked dotted".split()
    + list(COLOURS) + list(BACKGROUNDS) + list(SHAPES) + list(PATTERNS)))


# ---------------------------------------------------------------------------------------------- sampling


def random_pattern(rng: random.Random, kind: str | None = None) -> Pattern:
    return Pattern(kind or rng.choice(PATTERNS), rng.uniform(*PERIODS), rng.uniform(0, math.pi),
                   (rng.random(), rng.random()), rng.getrandbits(30))


def random_style(rng: random.Random, style: str) -> Pattern | None:
    """The free part of a style: the printed pattern of a negative, the stars of a night sky."""
    if style == "negative":
        return random_pattern(rng)
    if style == "night":
        return random_pattern(rng, "dotted")
    return None


def random_object(rng: random.Random, *, colour: str, moving: bool = True, side: int | None = None,
                  pattern: Pattern | None = None) -> Obj:
    side = side or rng.randint(*SIDES)
    return Obj(shape=rng.choice(SHAPES), colour=colour, side=side, x=rng.uniform(0, SIZE - side),
               y=rng.uniform(0, SIZE - side), vx=rng.choice(SPEEDS) if moving else 0.0,
               vy=rng.choice(SPEEDS) if moving else 0.0, pattern=pattern)


def _base(rng: random.Random, n_objects: int, patterned: float) -> Scene:
    colours = rng.sample(list(COLOURS), n_objects)  # distinct: instructions name an object by its colour
    objs = tuple(random_object(rng, colour=c, pattern=random_pattern(rng) if rng.random() < patterned else None)
                 for c in colours)
    shade = (rng.uniform(20, 40), rng.uniform(20, 40), rng.random(), rng.random())
    return Scene(rng.choice(list(BACKGROUNDS)), objs, pan=(rng.choice(PANS), rng.choice(PANS)), shade=shade,
                 grain=rng.getrandbits(30))


def source_scene(rng: random.Random) -> Scene:
    """Plain videos: what FDD edits, what the test set starts from, and all the video adapter ever sees."""
    return _base(rng, rng.choice([1, 2, 2]), patterned=0.0)


def backbone_scene(rng: random.Random) -> Scene:
    """The text-to-image distribution: every state an edit can produce (patterns, up to three objects, styles)."""
    sc = _base(rng, rng.choices([0, 1, 2, 3], weights=[1, 4, 4, 2])[0], patterned=0.4)
    bg_pattern = random_pattern(rng) if rng.random() < 0.3 else None
    style = rng.choices(STYLES, weights=[4, 1, 1])[0]
    return replace(sc, bg_pattern=bg_pattern, style=style, style_pattern=random_style(rng, style))


def _overlap(scene: Scene, new: Obj) -> int:
    """Pixels of the scene's objects that `new` would cover, over the clip."""
    hidden = 0
    for t in range(NUM_FRAMES):
        x, y = new.position(t)
        hidden += int((layers(scene, t)[y : y + new.side, x : x + new.side] > 0).sum())
    return hidden


def _name(o: Obj) -> str:
    return f"the {o.colour} {o.shape}"


def edit(scene: Scene, task: str, rng: random.Random) -> tuple[str, Scene]:
    """(instruction, target scene) for a plain source scene; one-to-many edits draw their free parameters here, and
    every edit draws the grain afresh (a grainless scene stays grainless)."""
    instruction, target = _edit(scene, task, rng)
    return instruction, replace(target, grain=None if scene.grain is None else rng.getrandbits(30))


def _edit(scene: Scene, task: str, rng: random.Random) -> tuple[str, Scene]:
    objs = scene.objects
    i = rng.randrange(len(objs)) if objs else None
    if task == "add":
        colour = rng.choice([c for c in COLOURS if c not in {o.colour for o in objs}])
        candidates = [random_object(rng, colour=colour, moving=False, side=SIDES[0] + 1) for _ in range(12)]
        new = min(candidates, key=lambda c: _overlap(scene, c))  # anywhere clear of the objects: still many places
        return f"add a {new.colour} {new.shape}", replace(scene, objects=objs + (new,))
    if task == "remove":
        return f"remove {_name(objs[i])}", replace(scene, objects=objs[:i] + objs[i + 1:])
    if task == "background":
        p = random_pattern(rng)
        return f"make the background {p.kind}", replace(scene, bg_pattern=p)
    if task == "texture":
        p = random_pattern(rng)
        new = replace(objs[i], pattern=p)
        return f"make {_name(objs[i])} {p.kind}", replace(scene, objects=objs[:i] + (new,) + objs[i + 1:])
    if task == "local":
        c = rng.choice([c for c in COLOURS if c not in {o.colour for o in objs}])
        new = replace(objs[i], colour=c)
        return f"make {_name(objs[i])} {c}", replace(scene, objects=objs[:i] + (new,) + objs[i + 1:])
    if task == "style":
        p = random_style(rng, "negative")
        return f"make it a {p.kind} negative", replace(scene, style="negative", style_pattern=p)
    if task == "global":
        return "make it night", replace(scene, style="night", style_pattern=random_style(rng, "night"))
    raise ValueError(f"unknown task {task!r}")


# no pixel target: the free parameters (position, pattern, stars) are the editor's choice (the grain is everywhere)
ONE_TO_MANY = ("add", "background", "texture", "style", "global")
