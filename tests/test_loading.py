"""Loading through the real from_pretrained paths, offline policy, LoRA files, configs."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from eve.config import EveConfig, load_config
from eve.errors import EveError
from eve.models import Cond, EveModel, Role
from eve.models.lora import export_diffusers_lora, load_lora, lora_parameters, save_lora
from eve.models.loading import resolve

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_file_loads():
    from eve.config import PrepConfig

    files = [f for f in sorted((ROOT / "configs").rglob("*.yaml")) if not {"accelerate", "data"} & set(f.parts)]
    assert len(files) >= 4
    for f in files:
        cfg = load_config(f)
        assert isinstance(cfg, EveConfig)
    for f in sorted((ROOT / "configs" / "data").glob("*.yaml")):
        assert isinstance(load_config(f, schema=PrepConfig), PrepConfig)
    import yaml

    for f in sorted((ROOT / "configs" / "accelerate").glob("*.yaml")):
        assert yaml.safe_load(f.read_text())["distributed_type"] in ("MULTI_GPU", "FSDP")


def test_tiny_yaml_paths_resolve_from_any_cwd(tiny_dir, tiny_cfg, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(tiny_dir / "eve.yaml")
    assert Path(cfg.model.pretrained) == (tiny_dir / "sd").resolve()
    assert cfg == tiny_cfg


def test_hub_id_offline_fails_fast_with_a_clear_message(tiny_cfg, tmp_path, monkeypatch):
    """Offline (the suite sets HF_HUB_OFFLINE) and not cached: one line naming the field and the fix, before any
    weight loads; through edit.py: exit 2, no traceback, no retry lines, no output."""
    from huggingface_hub import constants

    from conftest import moving_square
    from eve.data.video import write_video

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    cfg = replace(tiny_cfg.model, controlnet="nobody/no-such-controlnet")
    with pytest.raises(EveError, match=r"^model.controlnet=nobody/no-such-controlnet is a hub id, and HF_HUB_OFFLINE "
                                       r"is set and no copy is cached: set model.controlnet to a local folder"):
        EveModel.from_config(cfg)
    clip = tmp_path / "clip.mp4"
    write_video(clip, moving_square(4, 16, 16), 8)
    r = subprocess.run([sys.executable, str(ROOT / "edit.py"), "--config", str(Path(tiny_cfg.model.pretrained).parent
                        / "eve.yaml"), "--video", str(clip), "--instruction", "make it blue", "--output",
                        str(tmp_path / "out.mp4"), "model.controlnet=nobody/no-such-controlnet"],
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty")})
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower() or "retry" in line.lower()]
    assert r.returncode == 2 and len(errors) == 1 and "model.controlnet=nobody" in errors[0], r.stderr[-2000:]
    assert not (tmp_path / "out.mp4").exists()


def test_a_cached_hub_copy_loads_without_network(tiny_cfg, tmp_path, monkeypatch):
    """Offline with the hub id in the local cache (huggingface_hub's layout: refs/main names the snapshot):
    it loads from there, no network call."""
    import shutil

    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--tiny-controlnet" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_cfg.model.controlnet, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    m = EveModel.from_config(replace(tiny_cfg.model, controlnet="someone/tiny-controlnet"))
    ref = EveModel.from_config(tiny_cfg.model)
    for (name, a), (_, b) in zip(m.controlnet.state_dict().items(), ref.controlnet.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("field", ["pretrained", "controlnet", "motion_adapter"])
def test_missing_weight_folder_names_the_field(tiny_cfg, tmp_path, field):
    cfg = replace(tiny_cfg.model, **{field: str(tmp_path / "missing")})
    with pytest.raises(EveError, match=f"weight folder not found: .*missing.*model.{field}"):
        EveModel.from_config(cfg)


def test_weight_folder_without_a_component(tiny_cfg, tmp_path):
    (tmp_path / "sd").mkdir()
    with pytest.raises(EveError, match="model.pretrained has no scheduler/ folder"):
        EveModel.from_config(replace(tiny_cfg.model, pretrained=str(tmp_path / "sd")))
    (tmp_path / "sd" / "scheduler").symlink_to(tiny_cfg.model.pretrained + "/scheduler")
    with pytest.raises(EveError, match="model.pretrained has no unet/ folder"):
        EveModel.from_config(replace(tiny_cfg.model, pretrained=str(tmp_path / "sd")))


def test_resolve_tells_paths_from_hub_ids(tmp_path):
    assert resolve(str(tmp_path), "x") == (str(tmp_path), True)
    assert resolve("org/name", "x") == ("org/name", False)
    for bad in ("./nothing/here", "/abs/missing", "a/b/c"):
        with pytest.raises(EveError):
            resolve(bad, "x")


def perturbed_student(model):
    model.add_lora(4, 8.0, ["to_q", "to_k", "to_v", "to_out.0"])
    with torch.no_grad():
        for p in lora_parameters(model.unet):
            p.add_(0.2 * torch.randn_like(p))
    return model


def outputs(model):
    g = torch.Generator().manual_seed(1)
    xt = torch.randn(1, 3, 3, 8, 8, generator=g)
    cond = Cond(model.encode_text(["a cat"]), model.encode_text(["make it a cat"]), torch.zeros(1, 3, 3, 8, 8),
                torch.tensor([1]))
    with torch.no_grad():
        return model(xt, torch.tensor([500]), cond, Role.STUDENT)


@pytest.mark.parametrize("fmt", ["eve", "diffusers"])
def test_lora_file_round_trip(model, tiny_cfg, tmp_path, fmt):
    torch.manual_seed(0)
    student = perturbed_student(model)
    expected = outputs(student)
    if fmt == "eve":
        path = tmp_path / "student_lora.safetensors"
        save_lora(student.unet, path, config_yaml="model: {}\n")
    else:
        path = export_diffusers_lora(student.unet, tmp_path)
        with safe_open(str(path), framework="pt") as f:
            assert all(k.startswith("unet.") for k in f.keys())
            assert json.loads(f.metadata()["lora_adapter_metadata"])["unet.lora_alpha"] == 8.0
    fresh = EveModel.from_config(tiny_cfg.model)
    meta = load_lora(fresh.unet, path if fmt == "eve" else tmp_path)
    torch.testing.assert_close(outputs(fresh), expected, atol=1e-6, rtol=1e-6)
    if fmt == "eve":
        assert meta["lora_alpha"] == "8.0" and meta["config"] == "model: {}\n"
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


def test_diffusers_can_load_the_exported_lora(model, tiny_dir, tmp_path):
    """The export is a real diffusers LoRA: a plain UNet2DConditionModel loads it with its own loader."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    student = perturbed_student(model)
    export_diffusers_lora(student.unet, tmp_path)
    unet = UNet2DConditionModel.from_pretrained(tiny_dir / "sd", subfolder="unet")
    x, t, text = torch.randn(2, 3, 8, 8), torch.tensor([300, 300]), model.encode_text(["a", "b"])
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=text).sample
        unet.load_lora_adapter(str(tmp_path), weight_name="pytorch_lora_weights.safetensors", prefix="unet")
        after = unet(x, t, encoder_hidden_states=text).sample
        # the same LoRA inside the composed model, motion off, no ControlNet: per-frame 2D UNet + LoRA
        from eve.models import Switches

        ours = student(x.unsqueeze(1), t, Cond(text), switches=Switches(False, False, True, False))[:, 0]
    assert (after - before).abs().max() > 1e-3
    torch.testing.assert_close(ours, after, atol=1e-5, rtol=1e-5)


def test_a_diffusers_pipeline_loads_the_exported_lora(tmp_path):
    """`pipe.load_lora_weights(folder)` on a plain StableDiffusionPipeline built from the tiny VAE set."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from eve.models.tiny import write_tiny

    cfg = load_config(write_tiny(tmp_path / "tiny", with_vae=True))
    student = perturbed_student(EveModel.from_config(cfg.model))
    export_diffusers_lora(student.unet, tmp_path / "lora")
    sd = tmp_path / "tiny" / "sd"
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(sd, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(sd, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(sd, subfolder="unet"),
        scheduler=DDIMScheduler.from_pretrained(sd, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    run = lambda: pipe("a cat", num_inference_steps=2, height=16, width=16, output_type="pt",  # noqa: E731
                       generator=torch.Generator().manual_seed(0)).images
    before = run()
    pipe.load_lora_weights(str(tmp_path / "lora"))
    assert (run() - before).abs().max() > 1e-4


def test_lora_that_does_not_fit_is_refused(model, tmp_path):
    from safetensors.torch import save_file

    save_file({"down_blocks.9.nothing.lora_A.weight": torch.zeros(4, 8), "down_blocks.9.nothing.lora_B.weight":
               torch.zeros(8, 4)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises((EveError, ValueError)):
        load_lora(model.unet, tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EveError, match="cannot read checkpoint"):
        load_lora(model.unet, tmp_path / "junk.safetensors")


def test_vae_codec_tiny_set(tmp_path):
    """The latent-space variant: a tiny AutoencoderKL loaded from sd/vae through from_pretrained."""
    from eve.models.tiny import write_tiny

    cfg = load_config(write_tiny(tmp_path, with_vae=True))
    assert cfg.model.codec == "vae"
    m = EveModel.from_config(cfg.model)
    video = torch.rand(1, 3, 3, 16, 24) * 2 - 1
    with torch.no_grad():
        z = m.encode_video(video)
        assert z.shape == (1, 3, 4, 8, 12)
        assert m.decode_video(z).shape == video.shape
        cond = Cond(m.encode_text(["x"]), m.encode_text(["y"]), video, torch.tensor([2]))
        assert m(z, torch.tensor([10]), cond, Role.EDIT_TEACHER).shape == z.shape
    assert m.size_multiple == 4
