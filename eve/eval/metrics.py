"""The metrics of video-editing evaluation (paper §4.1 and Table 1; paper-notes §3.2), each a small function of
embeddings, features, flows or pixels that the metric models produced (eve/eval/scorers.py runs those models).

Definitions, F frames per video:

* CLIPFrame (`clip_frame`): mean cosine similarity of consecutive frames' CLIP image embeddings (`pairs="all"`: of
  all pairs i != j, as TGVE's own script averages). Favours static or unedited videos.
* CLIP text-frame score (`text_frame`): mean over frames of the cosine of a frame's CLIP image embedding with the
  output caption's text embedding.
* PickScore (`text_frame` with `scale`): the same with a PickScore-weighted CLIP and the model's logit scale
  (about 100, so values near 20).
* ViCLIP_out (`video_text_out`): cosine of the edited video's embedding with the output caption's, by a video-text
  model (ViCLIP in the paper).
* ViCLIP_dir (`video_text_dir`): cosine of the change of the video embedding (edited minus source) with the change
  of the caption embedding (output minus input caption), after StyleGAN-NADA's directional CLIP similarity.
* DINO temporal consistency (`feature_consistency`): mean cosine of consecutive frames' DINO class-token features.
* Warp error (`warp_error`): mean absolute difference between each frame and the previous frame warped onto it by
  the optical flow between them (RAFT, estimated on the video being scored), over the pixels the flow maps inside
  the frame; pixels in [0, 1].
* Structure outside the edit (`masked_psnr`, `masked_lpips`): PSNR and LPIPS of the edited video against the source
  where the mask says the edit leaves the scene alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F_
from torch import Tensor


def _unit(x: Tensor) -> Tensor:
    return F_.normalize(x.float(), dim=-1)


def clip_frame(image_embeds: Tensor, pairs: str = "consecutive") -> float:
    """CLIPFrame of one video from its frames' image embeddings [F, D]; 1.0 for a single frame."""
    e = _unit(image_embeds)
    if e.shape[0] < 2:
        return 1.0
    if pairs == "consecutive":
        return float((e[1:] * e[:-1]).sum(-1).mean())
    if pairs == "all":
        sim = e @ e.T
        n = e.shape[0]
        return float((sim.sum() - sim.diagonal().sum()) / (n * (n - 1)))
    raise ValueError(f"pairs must be consecutive or all, got {pairs!r}")


def text_frame(image_embeds: Tensor, text_embed: Tensor, scale: float = 1.0) -> float:
    """Mean over frames of scale * cos(frame embedding [F, D], caption embedding [D]): the CLIP text-frame score
    (scale 1) or PickScore (scale = the PickScore model's logit_scale.exp())."""
    return float(scale * (_unit(image_embeds) @ _unit(text_embed.reshape(-1))).mean())


def video_text_out(video_embed: Tensor, text_embed: Tensor) -> float:
    """ViCLIP_out: cos(E_V(V_out), E_T(c_out)), embeddings [D]."""
    return float(_unit(video_embed.reshape(-1)) @ _unit(text_embed.reshape(-1)))


def video_text_dir(video_out: Tensor, video_in: Tensor, text_out: Tensor, text_in: Tensor) -> float:
    """ViCLIP_dir: cos(E_V(V_out) - E_V(V_in), E_T(c_out) - E_T(c_in)), each embedding [D] L2-normalised first;
    0 when either change is zero (no direction)."""
    dv = _unit(video_out.reshape(-1)) - _unit(video_in.reshape(-1))
    dt = _unit(text_out.reshape(-1)) - _unit(text_in.reshape(-1))
    if dv.norm() == 0 or dt.norm() == 0:
        return 0.0
    return float(_unit(dv) @ _unit(dt))


def feature_consistency(features: Tensor) -> float:
    """DINO temporal consistency: mean cos of consecutive frames' features [F, D]; 1.0 for a single frame."""
    return clip_frame(features, "consecutive")


def warp(frame: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """(frame [C, H, W] sampled at x + flow(x) for each pixel x of the target, in-frame mask [H, W]); flow [2, H, W]
    in pixels (x, y), as RAFT gives it from the target to `frame`."""
    C, H, W = frame.shape
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    x, y = xs + flow[0].float(), ys + flow[1].float()
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    grid = torch.stack([2 * x / max(W - 1, 1) - 1, 2 * y / max(H - 1, 1) - 1], -1)[None]
    out = F_.grid_sample(frame[None].float(), grid, mode="bilinear", padding_mode="border", align_corners=True)[0]
    return out, inside


def warp_error(frames: Tensor, flows: Tensor) -> float:
    """Mean |f_i - warp(f_{i-1}, flow_i)| over in-frame pixels and channels, frames [F, 3, H, W] in [0, 1], flows
    [F-1, 2, H, W] (flow_i maps frame i's pixels to frame i-1); 0.0 for a single frame."""
    if frames.shape[0] < 2:
        return 0.0
    total, count = 0.0, 0
    for i in range(1, frames.shape[0]):
        warped, inside = warp(frames[i - 1], flows[i - 1])
        diff = (frames[i].float() - warped).abs().mean(0)
        total += float(diff[inside].sum())
        count += int(inside.sum())
    return total / max(count, 1)


def masked_psnr(edited: Tensor, source: Tensor, keep: Tensor) -> float:
    """PSNR (dB) of edited vs source [F, 3, H, W] in [0, 1] over the pixels `keep` [F, H, W] marks (outside the
    edit); inf when they are equal there, nan when `keep` is empty."""
    k = keep.bool().unsqueeze(1).expand_as(edited)
    if not k.any():
        return math.nan
    mse = float(((edited.float() - source.float()) ** 2)[k].mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def masked_lpips(edited: Tensor, source: Tensor, keep: Tensor, net) -> float:
    """LPIPS of edited vs source [F, 3, H, W] in [0, 1], with the edit region (outside `keep` [F, H, W]) set to the
    source in both, so only what changed outside the edit counts; `net` an lpips.LPIPS (spatial or not)."""
    k = keep.bool().unsqueeze(1).float()
    kept = edited.float() * k + source.float() * (1 - k)
    device = next(net.parameters()).device
    with torch.no_grad():
        d = net(kept.to(device) * 2 - 1, source.float().to(device) * 2 - 1)
    return float(d.mean())
