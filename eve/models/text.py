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
        self._cache: dict[tuple[bool, str], tuple[Tensor, Tensor]] = {}

    @property
    def has_lora(self) -> bool:
        """A student LoRA on the text encoder (a user's LoRA file can carry one; FDD never trains one)."""
        from eve.models.lora import ADAPTER

        return ADAPTER in (getattr(self.encoder, "peft_config", None) or {})

    def forget(self) -> None:
        """Drop cached embeddings (after the encoder's LoRA changed)."""
        self._cache.clear()

    @property
    def dim(self) -> int:
        return self.encoder.config.hidden_size

    @torch.no_grad()
    def _encode_new(self, texts: list[str], lora: bool) -> None:
        if self.has_lora:  # the roles without LoRA (the teachers) read the caption without it too
            from diffusers.utils.peft_utils import set_adapter_layers

            set_adapter_layers(self.encoder, enabled=lora)
        ids = self.tokenizer(
            texts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.encoder.device)
        out = self.encoder(ids)
        for s, h, p in zip(texts, out.last_hidden_state, out.pooler_output):
            self._cache[lora, s] = (h, p)

    def _lookup(self, texts: list[str], lora: bool) -> list[tuple[Tensor, Tensor]]:
        lora = lora and self.has_lora
        new = sorted({s for s in texts if (lora, s) not in self._cache})
        if new:
            self._encode_new(new, lora)
        return [self._cache[lora, s] for s in texts]

    def forward(self, texts: list[str], lora: bool = False) -> Tensor:
        """[N, L, D] token embeddings (no gradient: the text encoder is frozen); `lora`: with the encoder's student
        LoRA, if it has one."""
        return torch.stack([h for h, _ in self._lookup(list(texts), lora)])

    def pooled(self, texts: list[str], lora: bool = False) -> Tensor:
        """[N, D] pooled embeddings."""
        return torch.stack([p for _, p in self._lookup(list(texts), lora)])
