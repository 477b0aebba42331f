"""An exponential moving average of the student LoRA (fdd.ema_decay; the paper is silent on averaging).

The average lives beside the trained parameters as fp32 copies; `applied()` swaps it into the parameters for a
block (saving, sample grids) and puts the trained values back after it, so the optimizer never sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from eve.errors import EveError
from eve.models.lora import ADAPTER


class Ema:
    """ema_0 = theta_0; after every optimizer step ema_n = d ema_(n-1) + (1 - d) theta_n."""

    def __init__(self, params: list[nn.Parameter], decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.mul_(self.decay).add_(p.detach().float(), alpha=1 - self.decay)

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average at the parameters' current values (a resume loads the saved average into them)."""
        for s, p in zip(self.shadow, self.params):
            s.copy_(p.detach())

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the parameters hold the average; after it, their trained values again."""
        trained = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(self.params, trained):
                    p.copy_(t)


def named_lora(unet: nn.Module, adapter: str = ADAPTER) -> dict[str, nn.Parameter]:
    """One adapter's LoRA parameters by their peft state-dict key (the keys of student_lora.safetensors: the
    parameter name without the adapter name), in the order of eve.models.lora.lora_parameters."""
    mine = f".{adapter}."
    return {n.replace(mine, "."): p for n, p in unet.named_parameters() if "lora_" in n and mine in n}


def trained_state(unet: nn.Module, prefix: str, adapter: str = ADAPTER) -> dict[str, Tensor]:
    """An adapter's trained values keyed "<prefix>/<peft key>", for train_state.safetensors (the student's when the
    LoRA file holds the average; the fake scores' always): training resumes from these."""
    return {f"{prefix}/{n}": p.detach().cpu().contiguous() for n, p in named_lora(unet, adapter).items()}


@torch.no_grad()
def load_trained_state(unet: nn.Module, tensors: dict[str, Tensor], prefix: str, adapter: str = ADAPTER) -> bool:
    """Copy "<prefix>/<name>" tensors into the LoRA in place; False when the checkpoint holds none (no EMA then)."""
    found = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
    if not found:
        return False
    params = named_lora(unet, adapter)
    if set(found) != set(params):
        raise EveError(f"the checkpoint's {prefix}/* tensors do not match the attached LoRA (rank or targets differ)")
    for n, p in params.items():
        p.copy_(found[n])
    return True
