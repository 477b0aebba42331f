"""Read edits back from generated frames, using the world's known geometry (the source and target scenes' layer
maps), and score them.

Every check is per frame and reads only pixels (no learned model), so it cannot be fooled by what fools a network:

* texture / background: the edited region carries a pattern (luminance spread >= PATTERN_STD, where the source was
  flat), keeps its hue, and the rest of the frame is kept;
* add: a blob of the requested colour (>= ADD_MIN_PIXELS; anywhere, as the new object may cover others); the
  source's objects are still there, and none of them has merely turned the added colour;
* remove: where the object was, the background is back and its colour is gone; the other objects are kept;
* local: the object's hue is the requested colour; the rest is kept;
* style (a printed negative): every visible surface carries a pattern in the target's palette (`patterned`,
  `in_palette`);
* global (night): the objects are within KEEP of the target and the sky carries stars in night's palette.

`contrast` is the pattern's luminance spread against the ground truth's, over the regions the edit patterns
(1 = as crisp): averaged modes read < 1. `fine_detail` reads the grain's strength in any frame, with no target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor

from eve.worlds.shapes import world as W

PATTERN_STD = 0.15  # luminance std of a patterned region; flat grained regions read ~0.06, ~0.09 with shading
KEEP = 0.2  # mean absolute error under which a region counts as unchanged
HUE_MIN = 0.1  # chroma below which a region has no readable hue
ADD_MIN_PIXELS = 30  # an added object (side 10) covers 50-100 pixels
COLOUR_TOL = 0.4  # per-pixel distance (RMS over channels) to a palette colour that still reads as that colour
WARP_SCALE = 0.1  # combined score: exp(-warp_error / WARP_SCALE)
CHANGED = 0.3  # an output pixel this far from the source counts as edited (edit_regions)
MIN_REGION = 12  # a surface showing fewer pixels than this is too small to read a pattern on

_PALETTE = torch.tensor(list(W.COLOURS.values()))


def luminance(frame: Tensor) -> Tensor:
    return frame.mean(0)


def erode(mask: Tensor) -> Tensor:
    """One-pixel erosion (generated edges are soft); a sliver that erosion would erase is kept as it is."""
    inner = -F_.max_pool2d(-mask[None, None].float(), 3, 1, 1)[0, 0] > 0.5
    return inner if inner.any() else mask


def region(scene: W.Scene, t: int, layer: int) -> Tensor:
    """[S, S] bool: where `layer` (0 = background, i + 1 = object i) is visible at frame t, eroded."""
    return erode(W.layers(scene, t) == layer)


def hue(frame: Tensor, mask: Tensor) -> str | None:
    """The palette colour whose chroma direction is nearest the region's mean chroma; None when too grey."""
    if not mask.any():
        return None
    mean = frame[:, mask].mean(1)
    chroma = mean - mean.mean()
    if chroma.norm() < HUE_MIN:
        return None
    pal = _PALETTE - _PALETTE.mean(1, keepdim=True)
    cos = (pal @ chroma) / (pal.norm(dim=1) * chroma.norm())
    return list(W.COLOURS)[int(cos.argmax())]


def hue_is(frame: Tensor, mask: Tensor, colour: str) -> bool:
    """The region's hue is `colour`; a region the frame does not show (a hidden object) is not judged."""
    return not mask.any() or hue(frame, mask) == colour


def near_colour(frame: Tensor, colour: str) -> Tensor:
    """[S, S] bool: pixels within COLOUR_TOL of a palette colour."""
    c = torch.tensor(W.COLOURS[colour]).view(3, 1, 1)
    return (frame - c).pow(2).mean(0).sqrt() < COLOUR_TOL


def kept(frame: Tensor, target: Tensor, mask: Tensor) -> bool:
    return not mask.any() or float((frame - target).abs().mean(0)[mask].mean()) < KEEP


def changed_object(source: W.Scene, target: W.Scene) -> int | None:
    """Index (in the source) of the object an edit removed, re-textured or recoloured."""
    for i, o in enumerate(source.objects):
        if i >= len(target.objects) or target.objects[i] != o:
            return i
    return None


def structure_change(source: W.Scene, target: W.Scene, t: int) -> Tensor:
    """[S, S]: how far the edit moves each pixel of frame t, grain aside (every edit redraws the grain)."""
    tgt, src = (W.render(W.without_grain(sc), t) for sc in (target, source))
    return (tgt - src).abs().amax(0)


def pattern_std(frame: Tensor, mask: Tensor) -> float:
    return float(luminance(frame)[mask].std()) if int(mask.sum()) > 1 else 0.0


def in_palette(frame: Tensor, target: Tensor, mask: Tensor) -> bool:
    """The region's mean colour is within KEEP of the target's (the palette is right, whatever the pattern)."""
    return float((frame[:, mask].mean(1) - target[:, mask].mean(1)).abs().mean()) < KEEP


def patterned_regions(task: str, source: W.Scene, target: W.Scene, t: int,
                      gt: Tensor | None = None) -> list[Tensor]:
    """The regions a one-to-many edit patterns at frame t; [] for other edits. A surface too small once eroded is
    read whole. A region is judged only where the target itself reads as patterned (>= MIN_REGION pixels, spread
    >= PATTERN_STD): a sliver of a dotted surface can fall between its dots. gt: the target's frame t, when the
    caller has rendered it already."""
    if task == "texture":
        layers = [changed_object(source, target) + 1]
    elif task in ("background", "global"):
        layers = [0]
    elif task == "style":
        layers = range(len(target.objects) + 1)
    else:
        return []
    gt, found = W.render(target, t) if gt is None else gt, []
    for layer in layers:
        r = region(target, t, layer)
        r = r if int(r.sum()) >= MIN_REGION else W.layers(target, t) == layer
        if int(r.sum()) >= MIN_REGION and pattern_std(gt, r) >= PATTERN_STD:
            found.append(r)
    return found


def patterned(frame: Tensor, regions: list[Tensor]) -> bool:
    """The frame carries a pattern on every region the edit patterns (none to read: the rest decides)."""
    return all(pattern_std(frame, r) >= PATTERN_STD for r in regions)


def frame_success(frame: Tensor, t: int, task: str, source: W.Scene, target: W.Scene, added: str | None = None) -> bool:
    """Does frame t of an edit read as the instruction asked? frame: [3, S, S] in [-1, 1]."""
    tgt = W.render(target, t)
    i = changed_object(source, target)
    n = len(source.objects)
    others = [j for j in range(n) if j != i]

    def others_kept(scene: W.Scene, ids) -> bool:
        return all(kept(frame, tgt, region(scene, t, j + 1)) for j in ids)

    if task in ("style", "global"):  # the palette is right wherever the pattern is read; night keeps the objects
        regions = patterned_regions(task, source, target, t, tgt)
        return (patterned(frame, regions) and all(in_palette(frame, tgt, r) for r in regions)
                and (task == "style" or others_kept(target, range(n))))
    if task == "texture":
        r = region(target, t, i + 1)
        return (patterned(frame, patterned_regions(task, source, target, t, tgt))
                and hue_is(frame, r, source.objects[i].colour)
                and kept(frame, tgt, region(target, t, 0)) and others_kept(target, others))
    if task == "background":
        return patterned(frame, patterned_regions(task, source, target, t, tgt)) and others_kept(target, range(n))
    if task == "local":
        r = region(target, t, i + 1)
        return hue_is(frame, r, target.objects[i].colour) and kept(frame, tgt, region(target, t, 0)) and others_kept(
            target, others)
    if task == "remove":
        gone = erode((W.layers(source, t) == i + 1) & (W.layers(target, t) == 0))
        colour_left = float(near_colour(frame, source.objects[i].colour)[gone].float().mean()) if gone.any() else 0.0
        shifted = {j: j - (j > i) for j in others}  # object j of the source is object shifted[j] of the target
        return (kept(frame, tgt, gone) and colour_left < 0.2
                and all(kept(frame, tgt, region(target, t, shifted[j] + 1)) for j in others))
    if task == "add":
        blob = int(near_colour(frame, added).sum())  # no source object has the added colour; it may cover them
        mine = ~near_colour(frame, added)
        covered_in_target = W.layers(target, t) == len(target.objects)  # where the ground truth's new object is
        for j, o in enumerate(source.objects):
            r = region(source, t, j + 1)
            if int(r.sum()) < 4:
                continue
            if float((~mine)[r].float().mean()) >= 0.9 and float(covered_in_target[r].float().mean()) < 0.9:
                return False  # an object turned the added colour: a recolour, not an addition
            if int((r & mine).sum()) >= 4 and float(near_colour(frame, o.colour)[r & mine].float().mean()) < 0.5:
                return False  # a source object is gone
        return blob >= ADD_MIN_PIXELS
    raise ValueError(f"unknown task {task!r}")


def edit_regions(video: Tensor, source: W.Scene, target: W.Scene) -> Tensor:
    """[F, S, S] bool: where the edit should change the frame (target != source, dilated by a pixel) or where the
    output changed it (|output - source| > CHANGED): temporal consistency is judged where something was edited."""
    src, tgt = W.render_video(source, video.shape[0]), W.render_video(target, video.shape[0])
    should = (tgt - src).abs().amax(1) > 0.05
    should = F_.max_pool2d(should[:, None].float(), 3, 1, 1)[:, 0] > 0.5
    return should | ((video - src).abs().amax(1) > CHANGED)


def contrast(video: Tensor, task: str, source: W.Scene, target: W.Scene) -> float | None:
    """Pattern luminance spread of the edit over the ground truth's, mean over the patterned regions and frames
    (texture, background, style, global); None for other edits."""
    ratios = []
    for t in range(video.shape[0]):
        gt = W.render(target, t)
        regions = patterned_regions(task, source, target, t, gt)
        ratios += [pattern_std(video[t], r) / pattern_std(gt, r) for r in regions]
    return sum(ratios) / len(ratios) if ratios else None


def fine_detail(frames: Tensor) -> Tensor:
    """[..., 3, H, W] -> [...]: log of the median, over a frame's grain cells, of |a cell's mean luminance minus the
    mean of its four neighbours'|. The finest detail the world draws is the grain (one cell per latent pixel), and
    sampling that has not resolved the noise averages it away (docs/proving-ground.md, "Gates"), so this one number
    per frame reads how much of it a sample kept, with no target; the median leaves out the few cells on an edge. Where a pattern
    covers most of the frame (a patterned background, the styles) the median reads the pattern instead."""
    lead = frames.shape[:-3]
    cells = F_.avg_pool2d(frames.reshape(-1, *frames.shape[-3:]).mean(-3, keepdim=True), W.GRAIN_CELL)
    p = F_.pad(cells, (1, 1, 1, 1), mode="replicate")
    around = (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4
    return (cells - around).abs().flatten(1).median(1).values.clamp(min=1e-6).log().view(lead)


def psnr(x: Tensor, y: Tensor) -> float:
    mse = float(((x - y) / 2).pow(2).mean())  # pixels in [-1, 1] -> [0, 1]
    return 10 * math.log10(1 / max(mse, 1e-10))


def clip_metrics(video: Tensor, task: str, source: W.Scene, target: W.Scene, added: str | None = None) -> dict:
    """Every metric of one edited clip [F, 3, S, S] (frames from 0), and the combined score.

    success: fraction of frames that read as the instruction asked; warp: warp error against the target's known
    motion where something was edited (`edit_regions`; the ground truth scores 0); psnr: against the ground truth,
    one-to-one edits only; contrast: pattern crispness (the edits that draw a pattern); combined = mean of success,
    exp(-warp / WARP_SCALE) and, where a pixel target
    exists, clip((psnr - 10) / 20, 0, 1). Fixed before any result was seen.
    """
    F = video.shape[0]
    out = {"success": sum(frame_success(video[t], t, task, source, target, added) for t in range(F)) / F,
           "warp": W.warp_error(video, target, edit_regions(video, source, target))}
    if task not in W.ONE_TO_MANY:
        out["psnr"] = psnr(video, W.render_video(target, F))
    c = contrast(video, task, source, target)
    if c is not None:
        out["contrast"] = c
    parts = [out["success"], math.exp(-out["warp"] / WARP_SCALE)]
    if "psnr" in out:
        parts.append(min(1.0, max(0.0, (out["psnr"] - 10) / 20)))
    out["combined"] = sum(parts) / len(parts)
    return out
