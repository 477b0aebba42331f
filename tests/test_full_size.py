"""The full-size random-weight stack (issue 12): every part's architecture has the published parameter count, and
the parts written to disk load back through the real `from_pretrained` paths at that size."""

import pytest
import torch
from safetensors import safe_open

from eve.models.full import PARTS, PUBLISHED, parameter_count, write_full


@pytest.mark.parametrize("part", PARTS)
def test_parameter_counts_are_the_published_ones(part):
    n, published = parameter_count(part), PUBLISHED[part]
    if isinstance(published, int):  # printed to the parameter
        assert n == published
    else:  # printed to 0.1 M
        assert abs(n - published) <= 0.05e6, f"{part}: {n:,} against {published:,.0f}"


def test_written_parts_load_through_from_pretrained(tmp_path):
    from diffusers import AutoencoderKL
    from transformers import CLIPTextModel, CLIPTokenizer

    from eve.models.build import load_codec, load_text
    from eve.config import ModelConfig

    write_full(tmp_path, only=("vae", "text_encoder"))
    vae = AutoencoderKL.from_pretrained(tmp_path / "sd", subfolder="vae")
    text = CLIPTextModel.from_pretrained(tmp_path / "sd", subfolder="text_encoder")
    assert sum(p.numel() for p in vae.parameters()) == PUBLISHED["vae"]
    with safe_open(str(tmp_path / "sd" / "vae" / "diffusion_pytorch_model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}  # written in --dtype
    assert sum(p.numel() for p in text.parameters()) == PUBLISHED["text_encoder"]
    assert CLIPTokenizer.from_pretrained(tmp_path / "sd", subfolder="tokenizer").model_max_length == 77
    # eve's own loaders read them: a caption is encoded at CLIP-L's width, an image to SD's latents
    cfg = ModelConfig(pretrained=str(tmp_path / "sd"), codec="vae", dtype="float32")
    assert load_text(cfg)(["a red car on a road"]).shape == (1, 77, 768)
    assert load_codec(cfg, 4).encode(torch.zeros(1, 1, 3, 64, 64)).shape == (1, 1, 4, 8, 8)
