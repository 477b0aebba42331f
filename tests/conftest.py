"""Shared fixtures: a tiny model set written once per session through the real `save_pretrained` layouts.
No test touches the network: HF_HUB_OFFLINE is set before any hub library is imported."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from eve.models.tiny import write_tiny

    d = tmp_path_factory.mktemp("tiny")
    write_tiny(d)
    return d


@pytest.fixture(scope="session")
def tiny_cfg(tiny_dir):
    from eve.config import load_config

    return load_config(tiny_dir / "eve.yaml")


@pytest.fixture
def model(tiny_cfg):
    """A freshly loaded composed model (tests may attach or perturb a LoRA)."""
    from eve.models import EveModel

    torch.manual_seed(0)
    return EveModel.from_config(tiny_cfg.model)


def moving_square(num_frames: int = 20, height: int = 32, width: int = 48) -> torch.Tensor:
    """[F, 3, H, W] in [-1, 1]: a red square sliding right over a dark background."""
    f = -0.8 * torch.ones(num_frames, 3, height, width)
    side = max(2, height // 3)
    for i in range(num_frames):
        x = round(i * (width - side) / max(1, num_frames - 1))
        f[i, :, height // 3 : height // 3 + side, x : x + side] = torch.tensor([0.8, -0.6, -0.6]).view(3, 1, 1)
    return f
