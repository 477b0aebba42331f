"""The metric models, each loaded by its library's own loader from a hub id or a local folder, turning frames into
what eve/eval/metrics.py scores: CLIP (and PickScore-weighted CLIP) image and text embeddings, a video-text model's
video and text embeddings, DINO features, RAFT optical flow, LPIPS.

Frames are [F, 3, H, W] in [0, 1] throughout. Each model is optional: a metric whose model is not given is not
computed (its column is left out), and the table says which models gave which columns.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F_
from torch import Tensor

from eve.errors import EveError
from eve.models.loading import from_pretrained, load_timm

logger = logging.getLogger(__name__)


def _pooled(out) -> Tensor:
    """transformers 5 returns a model output whose pooler_output is the projected embedding; older ones a tensor."""
    return out if isinstance(out, Tensor) else out.pooler_output


def uniform_indices(n: int, k: int) -> list[int]:
    """k frame indices spread evenly over n frames (all of them when n <= k)."""
    if n <= k:
        return list(range(n))
    return [round(i * (n - 1) / (k - 1)) for i in range(k)] if k > 1 else [0]


@torch.no_grad()
def text_features(scorer, texts: list[str]) -> Tensor:
    """[N, D] text embeddings of a scorer holding a transformers `model` (with get_text_features) and `processor`."""
    ids = scorer.processor(text=texts, return_tensors="pt", padding=True, truncation=True)
    out = scorer.model.get_text_features(input_ids=ids["input_ids"].to(scorer.device),
                                         attention_mask=ids["attention_mask"].to(scorer.device))
    return _pooled(out).float().cpu()


class ClipScorer:
    """A CLIP model (`CLIPModel`) and its processor: image embeddings per frame, text embeddings per caption, and
    its logit scale (PickScore multiplies cosines by it). `processor` may name another folder or id (PickScore's
    weights ship without one; its authors use laion/CLIP-ViT-H-14-laion2B-s32B-b79K's)."""

    def __init__(self, ref: str, field: str, processor: str | None = None, device: str | torch.device = "cpu"):
        from transformers import AutoProcessor, CLIPModel

        self.ref, self.device = ref, torch.device(device)
        self.model = from_pretrained(CLIPModel, ref, field).to(self.device).eval()
        self.processor = from_pretrained(AutoProcessor, processor or ref, f"{field}_processor" if processor else field)
        self.scale = float(self.model.logit_scale.exp())

    @torch.no_grad()
    def images(self, frames: Tensor, batch: int = 16) -> Tensor:
        out = []
        for chunk in frames.split(batch):
            pixels = self.processor(images=list(chunk.float().clamp(0, 1)), return_tensors="pt", do_rescale=False)
            out.append(_pooled(self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))))
        return torch.cat(out).float().cpu()

    def texts(self, texts: list[str]) -> Tensor:
        return text_features(self, texts)


class VideoTextScorer:
    """A transformers video-text model with `get_video_features` and `get_text_features` (X-CLIP: `XCLIPModel`,
    loaded by AutoModel) and its processor: one embedding per video (its `num_frames` frames sampled uniformly) and
    per caption. ViCLIP, the paper's model, has no transformers class: give it as `module:attr`, a class built with
    (ref, device) that has the same `video(frames)` and `texts(texts)` methods."""

    def __init__(self, ref: str, field: str, device: str | torch.device = "cpu"):
        from transformers import AutoModel, AutoProcessor

        self.ref, self.device = ref, torch.device(device)
        self.model = from_pretrained(AutoModel, ref, field).to(self.device).eval()
        if not hasattr(self.model, "get_video_features"):
            raise EveError(f"{field}={ref} is a {type(self.model).__name__}, not a video-text model (no "
                           "get_video_features)")
        self.processor = from_pretrained(AutoProcessor, ref, field)
        vision = getattr(self.model.config, "vision_config", None)
        self.num_frames = int(getattr(vision, "num_frames", 8))

    @torch.no_grad()
    def video(self, frames: Tensor) -> Tensor:
        picked = frames[uniform_indices(frames.shape[0], self.num_frames)].float().clamp(0, 1)
        if picked.shape[0] < self.num_frames:  # short clips: repeat the last frame (the model's length is fixed)
            picked = torch.cat([picked, picked[-1:].expand(self.num_frames - picked.shape[0], -1, -1, -1)])
        pixels = self.processor(videos=[list(picked)], return_tensors="pt", do_rescale=False)["pixel_values"]
        return _pooled(self.model.get_video_features(pixel_values=pixels.to(self.device)))[0].float().cpu()

    def texts(self, texts: list[str]) -> Tensor:
        return text_features(self, texts)


def video_text_scorer(ref: str, field: str, device) -> object:
    """A transformers video-text model by folder or id, or `module:attr[=WEIGHTS]` (ViCLIP or any model with the
    same two methods), a class built with (WEIGHTS or None, device)."""
    if is_entry_point(ref):
        from eve.data.instructions import load_entry_point

        target, _, weights = ref.partition("=")
        return load_entry_point(target, field, instantiate=False)(weights or None, device)
    return VideoTextScorer(ref, field, device)


def is_entry_point(ref: str) -> bool:
    """`module:attr[=WEIGHTS]` rather than a folder or hub id."""
    return ":" in ref.partition("=")[0] and not Path(ref).exists()


class DinoScorer:
    """A timm DINO(v2) model (the discriminators' loader, eve.models.loading.load_timm): class-token features per
    frame, frames resized to its input size and normalised with its own mean and std."""

    def __init__(self, ref: str, field: str, device: str | torch.device = "cpu"):
        import timm

        self.device = torch.device(device)
        self.model = load_timm(ref, field, num_classes=0).to(self.device).eval()
        cfg = timm.data.resolve_data_config({}, model=self.model)
        self.size = tuple(cfg["input_size"][1:])
        self.mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def features(self, frames: Tensor, batch: int = 16) -> Tensor:
        out = []
        for chunk in frames.split(batch):
            x = F_.interpolate(chunk.float().to(self.device), size=self.size, mode="bilinear", antialias=True,
                               align_corners=False)
            out.append(self.model((x - self.mean) / self.std).float().cpu())
        return torch.cat(out)


class FlowScorer:
    """torchvision's RAFT (raft_large or raft_small, whichever the weights file fits: a state dict in .pth or
    .safetensors; torchvision's own downloads are such files): flow from each frame to the previous one, at the
    frames' size rounded to a multiple of 8 and scaled up to a short side of 128 when smaller (RAFT's correlation
    pyramid needs both); `frames_for_flow` gives the frames it measured."""

    def __init__(self, ref: str, field: str, device: str | torch.device = "cpu", iterations: int = 12):
        from torchvision.models.optical_flow import raft_large, raft_small

        path = Path(ref)
        if not path.is_file():
            raise EveError(f"{field}: {ref} is not a file (a RAFT state dict, .pth or .safetensors)")
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:  # torch and safetensors raise many types for a corrupt file
            raise EveError(f"{field}: cannot read {ref}: {' '.join(str(e).split())[:200]}") from None
        for build in (raft_large, raft_small):
            model = build(weights=None)
            if set(model.state_dict()) == set(state):
                model.load_state_dict(state)
                break
        else:
            raise EveError(f"{field}: {ref} is neither torchvision's raft_large nor raft_small state dict")
        self.model, self.device, self.iterations = model.to(device).eval(), torch.device(device), iterations

    def frames_for_flow(self, frames: Tensor) -> Tensor:
        H, W = frames.shape[-2:]
        grow = max(1.0, 128 / min(H, W))
        size = (round(H * grow) // 8 * 8, round(W * grow) // 8 * 8)
        if size == (H, W):
            return frames.float()
        return F_.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)

    @torch.no_grad()
    def flows(self, frames: Tensor, batch: int = 8) -> Tensor:
        """[F-1, 2, H', W']: flow i maps frame i+1's pixels to frame i (frames_for_flow's size); `batch` pairs at a
        time (RAFT's correlation volume grows with the fourth power of the side)."""
        x = self.frames_for_flow(frames) * 2 - 1
        if x.shape[0] < 2:
            return x.new_zeros(0, 2, *x.shape[-2:])
        out = []
        for i in range(0, x.shape[0] - 1, batch):
            target, previous = x[i + 1 : i + 1 + batch].to(self.device), x[i : i + batch].to(self.device)
            out.append(self.model(target, previous[: target.shape[0]], num_flow_updates=self.iterations)[-1])
        return torch.cat(out).float().cpu()


def lpips_net(ref: str, field: str, device: str | torch.device = "cpu"):
    """lpips.LPIPS (AlexNet), its linear layers from the lpips package and the AlexNet features from a local
    torchvision state dict file (`ref`), since torchvision's own download needs the network."""
    import lpips

    path = Path(ref)
    if not path.is_file():
        raise EveError(f"{field}: {ref} is not a file (torchvision's alexnet state dict)")
    net = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    features = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    layers = {}
    for slice_name in ("slice1", "slice2", "slice3", "slice4", "slice5"):
        for name, _ in getattr(net.net, slice_name).named_parameters():
            layers[f"{slice_name}.{name}"] = features.get(name)
    missing = [k for k, v in layers.items() if v is None]
    if missing or not features:
        raise EveError(f"{field}: {ref} holds no AlexNet features (missing {', '.join(missing[:3]) or 'all'})")
    net.net.load_state_dict(layers)
    return net.to(device).eval()
