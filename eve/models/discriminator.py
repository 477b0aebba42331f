"""FDD's two discriminators: a frozen DINOv2 feature network with trainable heads (paper §3.3, after ADD).

Features: tokens from several blocks of a timm DINOv2 ViT (frozen, eval mode, gradients still flow to the input
image for the generator). Each hooked block gets its own head (after StyleGAN-T's design, described in
paper-notes §1.5, written here from that description): 1x1 conv -> residual circular conv (kernel 9) with
spectral norm and LeakyReLU, then a projection logit per token against a conditioning vector.

* EditDiscriminator D_e judges (input frame, instruction, output frame), per frame: the text, the input frame's
  CLS token and the input frame's patch tokens (the "image projection") are projected to condition tokens that one
  residual cross-attention layer mixes into the output frame's tokens (paper: "combine the conditions with an
  additional attention layer"); the logit projects onto [text; input CLS].
* VideoDiscriminator D_v judges (clip, caption): per-frame heads, then "a single temporal attention layer over the
  projected features, applied per pixel" (per token, with learned frame positions), then a projection on the caption.

Normalisation: GroupNorm instead of StyleGAN-T's batch-statistics norm, so a logit never depends on the other
samples in the batch (gradient accumulation and R1 stay per-sample).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def default_hooks(depth: int, n: int = 4) -> list[int]:
    """n evenly spaced block indices ending at the last block (ViT-S, 12 blocks: [2, 5, 8, 11])."""
    n = min(n, depth)
    return sorted({round(depth - 1 - i * depth / n) for i in range(n)})


def to_grid(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Images resized (bicubic, antialiased) to the feature network's input size; unchanged when already there."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)


class DinoFeatures(nn.Module):
    """Frozen timm ViT: pixels [N, 3, H, W] in [-1, 1] -> (per hook: patch tokens [N, L, D], CLS [N, D])."""

    def __init__(self, vit: nn.Module, hooks: list[int] | None = None):
        super().__init__()
        self.vit = vit
        self.hooks = list(hooks) if hooks else default_hooks(len(vit.blocks))
        if max(self.hooks) >= len(vit.blocks):
            raise ValueError(f"hooks {self.hooks} exceed the {len(vit.blocks)} blocks of the feature network")
        vit.prune_intermediate_layers(self.hooks, prune_norm=True, prune_head=True)  # drop unused trailing blocks
        self.vit.requires_grad_(False)
        self.vit.eval()
        self.size = tuple(vit.patch_embed.img_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def dim(self) -> int:
        return self.vit.embed_dim

    def train(self, mode: bool = True):
        super().train(mode)
        self.vit.eval()  # always frozen
        return self

    def forward(self, images: Tensor) -> list[tuple[Tensor, Tensor]]:
        x = to_grid((images.float() + 1) / 2, self.size)
        x = ((x - self.mean) / self.std).to(next(self.vit.parameters()).dtype)
        _, inter = self.vit.forward_intermediates(
            x, indices=self.hooks, output_fmt="NLC", intermediates_only=False, return_prefix_tokens=True, norm=False
        )
        return [(tokens.float(), prefix[:, 0].float()) for tokens, prefix in inter]


def sn_conv(cin: int, cout: int, k: int) -> nn.Module:
    return spectral_norm(nn.Conv1d(cin, cout, k, padding=k // 2, padding_mode="circular" if k > 1 else "zeros"))


class TokenBlock(nn.Module):
    """[N, D, L] -> [N, C, L]: 1x1 conv, then a residual circular conv, both spectral-normalised."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.inp = nn.Sequential(sn_conv(dim, channels, 1), nn.GroupNorm(1, channels), nn.LeakyReLU(0.2))
        self.res = nn.Sequential(sn_conv(channels, channels, 9), nn.GroupNorm(1, channels), nn.LeakyReLU(0.2))

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        return (h + self.res(h)) / math.sqrt(2)


class Projection(nn.Module):
    """Per-token projection logit <W h_n, FC(c)> / sqrt(cmap) (Miyato & Koyama 2018, as in StyleGAN-T)."""

    def __init__(self, channels: int, cond_dim: int, cmap_dim: int):
        super().__init__()
        self.out = sn_conv(channels, cmap_dim, 1)
        self.cmap = nn.Linear(cond_dim, cmap_dim)
        self.scale = 1 / math.sqrt(cmap_dim)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h [N, C, L], c [N, cond_dim] -> logits [N, L]."""
        return (self.out(h) * self.cmap(c).unsqueeze(-1)).sum(1) * self.scale


class Attention(nn.Module):
    """Multi-head attention written out (softmax(q k^T / sqrt(d)) v): twice differentiable everywhere, which R1
    needs (fused CPU attention kernels have no double backward)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        N, L, C = x.shape
        split = lambda t: t.view(N, -1, self.heads, C // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(context)), split(self.v(context))
        att = (q @ k.transpose(-1, -2) / math.sqrt(C // self.heads)).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(N, L, C))


class EditHead(nn.Module):
    def __init__(self, dim: int, text_dim: int, channels: int, cmap_dim: int, heads: int):
        super().__init__()
        self.block = TokenBlock(dim, channels)
        self.text = nn.Linear(text_dim, channels)
        self.image = nn.Linear(dim, channels)  # input frame's CLS
        self.patches = nn.Linear(dim, channels)  # input frame's patch tokens: the "image projection"
        self.norm = nn.LayerNorm(channels)
        self.attn = Attention(channels, heads)
        self.proj = Projection(channels, text_dim + dim, cmap_dim)

    def forward(self, out_tokens: Tensor, in_tokens: Tensor, in_cls: Tensor, text: Tensor) -> Tensor:
        h = self.block(out_tokens.transpose(1, 2)).transpose(1, 2)  # [N, L, C]
        cond = torch.cat([self.text(text)[:, None], self.image(in_cls)[:, None], self.patches(in_tokens)], 1)
        q = self.norm(h)
        h = h + self.attn(q, cond)
        return self.proj(h.transpose(1, 2), torch.cat([text, in_cls], -1))


class VideoHead(nn.Module):
    def __init__(self, dim: int, text_dim: int, channels: int, cmap_dim: int, heads: int, max_frames: int,
                 temporal: bool = True):
        super().__init__()
        self.block = TokenBlock(dim, channels)
        self.temporal = temporal
        if temporal:
            self.frame_pos = nn.Parameter(torch.zeros(max_frames, channels))
            self.norm = nn.LayerNorm(channels)
            self.attn = Attention(channels, heads)
        self.proj = Projection(channels, text_dim, cmap_dim)

    def forward(self, tokens: Tensor, text: Tensor, num_frames: int) -> Tensor:
        """tokens [(B F), L, D], text [B, T] -> logits [(B F), L]."""
        h = self.block(tokens.transpose(1, 2))  # [(B F), C, L]
        if not self.temporal:
            return self.proj(h, text.repeat_interleave(num_frames, 0))
        BF, C, L = h.shape
        B = BF // num_frames
        h = h.view(B, num_frames, C, L).permute(0, 3, 1, 2).reshape(B * L, num_frames, C)  # per token, over frames
        h = h + self.frame_pos[:num_frames]
        q = self.norm(h)
        h = h + self.attn(q, q)
        h = h.view(B, L, num_frames, C).permute(0, 2, 3, 1).reshape(BF, C, L)
        return self.proj(h, text.repeat_interleave(num_frames, 0))


class EditDiscriminator(nn.Module):
    """D_e(output frames, input frames, instruction) -> one logit per token per hook, [N, sum_k L_k]."""

    def __init__(self, features: DinoFeatures, text_dim: int, channels: int = 64, cmap_dim: int = 64, heads: int = 4):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(EditHead(features.dim, text_dim, channels, cmap_dim, heads) for _ in features.hooks)

    def forward(self, output: Tensor, source: Tensor, text: Tensor, feats: list[tuple[Tensor, Tensor]] | None = None,
                source_feats: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """output, source: [N, 3, H, W] in [-1, 1]; text: [N, T] pooled instruction embedding.
        `feats` / `source_feats` may be given precomputed (R1 needs the output features as leaves)."""
        feats = self.features(output) if feats is None else feats
        if source_feats is None:
            with torch.no_grad():
                source_feats = self.features(source)
        logits = [head(f, s, s_cls, text) for head, (f, _), (s, s_cls) in zip(self.heads, feats, source_feats)]
        return torch.cat(logits, 1)


class VideoDiscriminator(nn.Module):
    """D_v(clip, caption) -> one logit per token per frame per hook, [B, F * sum_k L_k]. With temporal=False it is
    an image discriminator with text conditioning (LoRA alignment's second critic): no temporal attention layer."""

    def __init__(self, features: DinoFeatures, text_dim: int, channels: int = 64, cmap_dim: int = 64, heads: int = 4,
                 max_frames: int = 32, temporal: bool = True):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(
            VideoHead(features.dim, text_dim, channels, cmap_dim, heads, max_frames, temporal) for _ in features.hooks
        )

    def forward(self, video: Tensor, text: Tensor, feats: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        """video: [B, F, 3, H, W] in [-1, 1]; text: [B, T] pooled caption embedding."""
        B, F = video.shape[:2]
        feats = self.features(video.flatten(0, 1)) if feats is None else feats
        logits = [head(f, text, F).view(B, -1) for head, (f, _) in zip(self.heads, feats)]
        return torch.cat(logits, 1)


def trainable_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """The heads only: the frozen feature network is referenced by the config, never saved."""
    return {k: v for k, v in module.state_dict().items() if not k.startswith("features.")}
