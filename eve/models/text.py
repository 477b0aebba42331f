"""Text conditioning: the backbone's CLIP tokenizer and text encoder, with a per-string cache."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TextEncoder(nn.Module):
    """Encodes strings to the token embeddings [N, L, D] the UNet and ControlNet cross-attend to, and to the
    pooled embedding [N, D] (used for discriminator conditioning)."""

    def __init__(self, tokenizer, text_encoder: nn.Module):
        super().__init__()
        self.tokenizer = tokenizer
        self.encoder = text_encoder
        self._cache: dict[str, tuple[Tensor, Tensor]] = {}

    @property
    def dim(self) -> int:
        return self.encoder.config.hidden_size

    @torch.no_grad()
    def _encode_new(self, texts: list[str]) -> None:
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.encoder.device)
        out = self.encoder(ids)
        for s, h, p in zip(texts, out.last_hidden_state, out.pooler_output):
            self._cache[s] = (h, p)

    def _lookup(self, texts: list[str]) -> list[tuple[Tensor, Tensor]]:
        new = sorted({s for s in texts if s not in self._cache})
        if new:
            self._encode_new(new)
        return [self._cache[s] for s in texts]

    def forward(self, texts: list[str]) -> Tensor:
        """[N, L, D] token embeddings (no gradient: the text encoder is frozen)."""
        return torch.stack([h for h, _ in self._lookup(list(texts))])

    def pooled(self, texts: list[str]) -> Tensor:
        """[N, D] pooled embeddings."""
        return torch.stack([p for _, p in self._lookup(list(texts))])
