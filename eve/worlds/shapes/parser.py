"""Read a shapes-world frame back into attributes: style, background, objects (colour, shape, centre, striped).

Used to score edits against what the world says the target is ("colours, presence, position"). Tolerant of the
noise generated frames carry: colours are matched to the nearest palette entry, objects are 4-connected
components of non-background pixels of at least MIN_AREA pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from eve.worlds.shapes.world import BACKGROUNDS, COLOURS, SIZE, STYLES, Scene, stripe_colour

MIN_AREA = 5
OBJECT_THRESHOLD = 0.45  # distance from the background colour beyond which a pixel belongs to an object


@dataclass
class Parsed:
    style: str
    background: str
    objects: list[dict]  # {"colour", "shape", "centre": (x, y), "area", "striped"}
    residual: float


def unstyle(frame: Tensor, style: str) -> Tensor:
    if style == "plain":
        return frame
    if style == "negative":
        return -frame
    return (frame + 1) / 0.35 - 1  # night


def _nearest(colour: Tensor, palette: dict) -> tuple[str, float]:
    names = list(palette)
    d = torch.stack([(colour - torch.tensor(palette[n])).norm() for n in names])
    i = int(d.argmin())
    return names[i], float(d[i])


# Every object pixel is one of these: a colour in full, or its stripe colour.
_INKS = [(name, False, torch.tensor(c)) for name, c in COLOURS.items()] + [
    (name, True, torch.tensor(stripe_colour(c))) for name, c in COLOURS.items()]


def _components(labels: list[list[str | None]]) -> list[list[tuple[int, int]]]:
    """4-connected components of equal, non-None labels."""
    H, W = len(labels), len(labels[0])
    seen = [[False] * W for _ in range(H)]
    comps = []
    for y in range(H):
        for x in range(W):
            if labels[y][x] is None or seen[y][x]:
                continue
            stack, comp = [(y, x)], []
            seen[y][x] = True
            while stack:
                cy, cx = stack.pop()
                comp.append((cy, cx))
                for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                    if 0 <= ny < H and 0 <= nx < W and not seen[ny][nx] and labels[ny][nx] == labels[y][x]:
                        seen[ny][nx] = True
                        stack.append((ny, nx))
            comps.append(comp)
    return comps


def _parse_as(frame: Tensor, style: str) -> Parsed:
    img = unstyle(frame.float(), style).clamp(-1.5, 1.5)
    border = torch.cat([img[:, 0], img[:, -1], img[:, :, 0], img[:, :, -1]], dim=1)  # [3, 4 * SIZE]
    bg, bg_dist = _nearest(border.median(dim=1).values, BACKGROUNDS)
    bg_col = torch.tensor(BACKGROUNDS[bg]).view(3, 1, 1)
    is_object = (img - bg_col).norm(dim=0) > OBJECT_THRESHOLD
    inks = torch.stack([c for _, _, c in _INKS])  # [K, 3]
    dist = (img.permute(1, 2, 0).unsqueeze(2) - inks.view(1, 1, -1, 3)).norm(dim=-1)  # [H, W, K]
    nearest = dist.argmin(-1)
    labels = [[_INKS[int(nearest[y, x])][0] if is_object[y, x] else None for x in range(SIZE)] for y in range(SIZE)]
    objects, residual = [], bg_dist
    for comp in _components(labels):
        if len(comp) < MIN_AREA:
            continue
        ys = torch.tensor([q[0] for q in comp])
        xs = torch.tensor([q[1] for q in comp])
        k = nearest[ys, xs]
        striped_px = torch.tensor([_INKS[int(i)][1] for i in k])
        colour = labels[comp[0][0]][comp[0][1]]
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        fill = len(comp) / (h * w)
        shape = "square" if fill > 0.9 else "circle" if fill > 0.68 else "triangle"
        objects.append({"colour": colour, "shape": shape, "centre": (float(xs.float().mean()), float(ys.float().mean())),
                        "area": len(comp), "striped": bool(striped_px.float().mean() > 0.25)})
        residual += float(dist[ys, xs, k].mean())
    return Parsed(style, bg, objects, residual / (1 + len(objects)))


def parse(frame: Tensor) -> Parsed:
    """The reading (over the three styles) whose background and object colours fit the palettes best."""
    return min((_parse_as(frame, s) for s in STYLES), key=lambda p: p.residual)


def matches(parsed: Parsed, target: Scene, t: int, *, added: tuple | None = None, tol: float = 2.5) -> bool:
    """Does the frame show the target scene at frame t? Checks style, background, object count, and for each
    target object one parsed object of the same colour (and stripes) within `tol` pixels of its centre. An object
    placed freely ("add") is given as `added` = (colour, shape): a second object of that colour, anywhere."""
    if parsed.style != target.style or parsed.background != target.background:
        return False
    if len(parsed.objects) != len(target.objects):
        return False
    free = list(parsed.objects)
    for o in target.objects:
        if added is not None and (o.colour, o.shape) == added and o.vx == 0 and o.vy == 0:
            hit = next((p for p in free if p["colour"] == o.colour), None)
        else:
            cx, cy = o.centre(t)
            hit = next((p for p in free if p["colour"] == o.colour and p["striped"] == o.striped
                        and abs(p["centre"][0] - cx) <= tol and abs(p["centre"][1] - cy) <= tol), None)
        if hit is None:
            return False
        free.remove(hit)
    return True


def track(video: Tensor, colour: str | None = None) -> list[tuple[float, float] | None]:
    """Centre of the largest object (of `colour`, if given) in each frame; None where none is found."""
    out = []
    for frame in video:
        objs = [o for o in parse(frame).objects if colour is None or o["colour"] == colour]
        out.append(max(objs, key=lambda o: o["area"])["centre"] if objs else None)
    return out


assert SIZE == 16
