"""Every LoRA format users have (issue 11), each written by the library that writes it in the wild, loaded by eve and
compared with what stock diffusers makes of the same file: the UNet's output and the text encoder's embeddings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eve.errors import EveError
from eve.models import Cond, EveModel, Role, Switches
from eve.models.lora import inspect_lora

ROOT = Path(__file__).resolve().parents[1]
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
PER_FRAME = Switches(edit=False, motion=False, lora=True, known=False)  # eve's student reduced to the 2D UNet


def lora_config(**kw):
    from peft import LoraConfig

    return LoraConfig(**kw)


@torch.no_grad()
def trained(module):
    """B = 0 after peft's init (the LoRA a no-op): give B values, as training would."""
    for n, p in module.named_parameters():
        if "lora_B" in n:
            p.normal_(0, 0.3)
    return module


def stock_pipeline(sd):
    """A stock StableDiffusionPipeline over the tiny set's parts (what a diffusers user would load)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return StableDiffusionPipeline(
        vae=None, text_encoder=CLIPTextModel.from_pretrained(sd, subfolder="text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(sd, subfolder="tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(sd, subfolder="unet"),
        scheduler=DDIMScheduler.from_pretrained(sd, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def trained_parts(sd, *, text_encoder: bool, unet_kw: dict | None = None):
    """A pipeline whose UNet (and text encoder) carry a random LoRA, as after a user's training run."""
    pipe = stock_pipeline(sd)
    torch.manual_seed(0)
    pipe.unet.add_adapter(lora_config(r=4, lora_alpha=8, target_modules=UNET_TARGETS, **(unet_kw or {})))
    trained(pipe.unet)
    if text_encoder:
        pipe.text_encoder.add_adapter(lora_config(r=2, lora_alpha=2, target_modules=TE_TARGETS))
        trained(pipe.text_encoder)
    return pipe


PROMPTS = ["a red square", "make it blue"]


@torch.no_grad()
def stock_outputs(pipe):
    ids = pipe.tokenizer(PROMPTS, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         return_tensors="pt").input_ids
    text = pipe.text_encoder(ids).last_hidden_state
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, pipe.unet.config.in_channels, 8, 8, generator=g)
    return text, pipe.unet(x, torch.tensor([300, 300]), encoder_hidden_states=text).sample, x


@torch.no_grad()
def eve_outputs(model: EveModel, x):
    text = model.encode_text(PROMPTS, Role.STUDENT)
    out = model(x.unsqueeze(1), torch.tensor([300, 300]), Cond(text), switches=PER_FRAME)[:, 0]
    return text, out


def assert_same_as_stock(tiny_cfg, path, pipe, *, changes_text: bool):
    """eve's student reads the file as stock diffusers reads it; its teachers ignore it."""
    ref_text, ref_out, x = stock_outputs(pipe)
    model = EveModel.from_config(tiny_cfg.model)
    base_text = model.encode_text(PROMPTS, Role.STUDENT)
    model.load_lora(path)
    text, out = eve_outputs(model, x)
    torch.testing.assert_close(text, ref_text, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    assert (text - base_text).abs().max() > 1e-4 if changes_text else torch.equal(text, base_text)
    torch.testing.assert_close(model.encode_text(PROMPTS, Role.EDIT_TEACHER), base_text, atol=0, rtol=0)


def reference(sd, path):
    """Stock diffusers' reading of a LoRA file: `pipe.load_lora_weights`."""
    pipe = stock_pipeline(sd)
    pipe.load_lora_weights(str(path.parent), weight_name=path.name)
    return pipe


def test_diffusers_training_script_format_with_text_encoder(tiny_cfg, tiny_dir, tmp_path):
    """What diffusers' SD LoRA scripts write: convert_state_dict_to_diffusers, then save_lora_weights (legacy
    `lora.down` / `lora.up` keys), text-encoder layers included."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    sd = tiny_dir / "sd"
    pipe = trained_parts(sd, text_encoder=True)
    StableDiffusionPipeline.save_lora_weights(
        tmp_path, unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)))
    path = tmp_path / "pytorch_lora_weights.safetensors"
    info = inspect_lora(path)
    assert info.format == "diffusers-legacy" and info.text_encoder_keys > 0
    assert_same_as_stock(tiny_cfg, path, reference(sd, path), changes_text=True)


def test_kohya_format(tiny_cfg, tiny_dir, tmp_path):
    """kohya / A1111 keys (`lora_unet_...`, `lora_te_...`, `.alpha`), written by diffusers' own converter."""
    from diffusers.utils import convert_state_dict_to_kohya
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    sd = tiny_dir / "sd"
    pipe = trained_parts(sd, text_encoder=True)
    state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(pipe.unet).items()}
    state |= {f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(pipe.text_encoder).items()}
    kohya = convert_state_dict_to_kohya(state)
    # the converter writes alpha = rank; a kohya file's own alphas differ per layer, and must be honoured
    for i, k in enumerate(sorted(k for k in kohya if k.endswith(".alpha"))):
        kohya[k] = torch.tensor(float(1 + i % 3))
    save_file({k: v.contiguous() for k, v in kohya.items()}, str(tmp_path / "style.safetensors"))
    info = inspect_lora(tmp_path / "style.safetensors")
    assert info.format == "kohya" and info.text_encoder_keys > 0
    assert_same_as_stock(tiny_cfg, tmp_path / "style.safetensors", reference(sd, tmp_path / "style.safetensors"),
                         changes_text=True)


def test_per_layer_rank_and_alpha_are_honoured(tiny_cfg, tiny_dir, tmp_path):
    """rank_pattern / alpha_pattern (peft), saved with diffusers' save_lora_weights and its adapter metadata."""
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    sd = tiny_dir / "sd"
    patterns = {"rank_pattern": {"to_k": 2}, "alpha_pattern": {"to_v": 1.0}}
    pipe = trained_parts(sd, text_encoder=False, unet_kw=patterns)
    StableDiffusionPipeline.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(pipe.unet),
                                              unet_lora_adapter_metadata=pipe.unet.peft_config["default"].to_dict())
    path = tmp_path / "pytorch_lora_weights.safetensors"
    assert inspect_lora(path).format == "diffusers"
    ref_text, ref_out, x = stock_outputs(pipe)  # the trained model itself is the reference here
    model = EveModel.from_config(tiny_cfg.model)
    model.load_lora(path)
    text, out = eve_outputs(model, x)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    config = model.unet.peft_config["student"]
    assert any(v == 2 for v in config.rank_pattern.values()) and any(v == 1.0 for v in config.alpha_pattern.values())


def test_peft_adapter_folder(tiny_cfg, tiny_dir, tmp_path):
    """`PeftModel.save_pretrained` (adapter_config.json + adapter_model.safetensors), read by peft's own loader."""
    from peft import get_peft_model

    sd = tiny_dir / "sd"
    pipe = stock_pipeline(sd)
    torch.manual_seed(0)
    peft_model = get_peft_model(pipe.unet, lora_config(r=4, lora_alpha=4, target_modules=UNET_TARGETS,
                                                       rank_pattern={"to_q": 2}))
    trained(pipe.unet)
    peft_model.save_pretrained(str(tmp_path / "adapter"))
    assert inspect_lora(tmp_path / "adapter").format == "peft"
    _, ref_out, x = stock_outputs(pipe)  # pipe.unet now carries the adapter in place
    model = EveModel.from_config(tiny_cfg.model)
    model.load_lora(tmp_path / "adapter")
    _, out = eve_outputs(model, x)
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    # the roles still switch it: the teachers read the plain backbone
    plain = EveModel.from_config(tiny_cfg.model)
    no_lora = Switches(edit=False, motion=False, lora=False, known=False)
    text = plain.encode_text(PROMPTS)
    with torch.no_grad():
        a = model(x.unsqueeze(1), torch.tensor([300, 300]), Cond(text), switches=no_lora)
        b = plain(x.unsqueeze(1), torch.tensor([300, 300]), Cond(text), switches=no_lora)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_eve_lora_survives_a_trip_through_stock_diffusers(tiny_cfg, tiny_dir, tmp_path):
    """A LoRA trained by eve, loaded by stock diffusers, saved again by diffusers, loaded by eve: same output."""
    from eve.models.lora import export_diffusers_lora

    torch.manual_seed(0)
    student = EveModel.from_config(tiny_cfg.model)
    student.add_lora(4, 8, UNET_TARGETS)
    trained(student.unet)
    export_diffusers_lora(student.unet, tmp_path / "eve")
    pipe = stock_pipeline(tiny_dir / "sd")
    pipe.load_lora_weights(str(tmp_path / "eve"), adapter_name="eve")
    pipe.save_lora_weights(tmp_path / "again", unet_lora_layers=_adapter_state(pipe.unet, "eve"),
                           unet_lora_adapter_metadata=pipe.unet.peft_config["eve"].to_dict())  # keeps alpha
    again = EveModel.from_config(tiny_cfg.model)
    again.load_lora(tmp_path / "again")
    _, _, x = stock_outputs(pipe)
    _, ours = eve_outputs(student, x)
    _, theirs = eve_outputs(again, x)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=1e-5)


def _adapter_state(module, name):
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(module, adapter_name=name)


def test_bad_lora_files_fail_in_one_line_before_any_weight_loads(tmp_path, capsys, monkeypatch):
    """edit.py checks the file's header before the models load; each bad file is one error line, exit 2."""
    from safetensors.torch import save_file

    from eve.editing import cli

    save_file({"conv.weight": torch.zeros(2, 2)}, str(tmp_path / "not_lora.safetensors"))
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "empty").mkdir()
    save_file({"transformer.blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 4)}, str(tmp_path / "flux.safetensors"))
    from eve.editing.pipeline import EveVideoEditPipeline

    monkeypatch.setattr(EveVideoEditPipeline, "from_eve_config",
                        classmethod(lambda *a, **k: pytest.fail("weights loaded before the check")))
    for bad, said in (("not_lora.safetensors", "is not a LoRA eve can read"), ("junk.safetensors", "cannot read"),
                      ("empty", "holds none of"), ("missing.safetensors", "checkpoint not found"),
                      ("flux.safetensors", "another architecture")):
        code = cli.main(["--config", str(ROOT / "configs/tiny.yaml"), "--video", "nope.mp4", "--instruction", "x",
                         "--output",
                         str(tmp_path / "o.gif"), "--checkpoint", str(tmp_path / bad)])
        err = capsys.readouterr().err
        assert code == 2 and said in err and "Traceback" not in err, err
        assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    with pytest.raises(EveError, match="formats:"):
        inspect_lora(tmp_path / "not_lora.safetensors")


def test_export_and_a_checkpoint_that_moves_with_its_weights(tiny_dir, tmp_path):
    """`python -m eve.export` writes what stock diffusers loads from the checkpoint folder itself; the config a
    checkpoint carries names its weights relative to it, so the two can move together to another machine."""
    import shutil

    from eve.config import load_config, portable_yaml
    from eve.editing.cli import load_edit_config
    from eve.export import main
    from eve.models.lora import save_lora

    root = tmp_path / "a"
    shutil.copytree(tiny_dir, root / "weights")
    cfg = load_config(root / "weights" / "eve.yaml")
    student = EveModel.from_config(cfg.model)
    student.add_lora(4, 8, UNET_TARGETS)
    trained(student.unet)
    ckpt = root / "run" / "ckpt-000010"
    save_lora(student.unet, ckpt / "student_lora.safetensors", config_yaml=portable_yaml(cfg, ckpt))
    (ckpt / "discriminator.safetensors").write_bytes(b"")  # what a real checkpoint also holds
    assert main([str(ckpt)]) == 0
    pipe = stock_pipeline(root / "weights" / "sd")
    pipe.load_lora_weights(str(ckpt))  # the folder: diffusers picks pytorch_lora_weights.safetensors
    _, theirs, x = stock_outputs(pipe)
    _, ours = eve_outputs(student, x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    assert str(tmp_path) not in inspect_lora(ckpt).meta["config"], "no absolute path of this machine"
    shutil.move(root, tmp_path / "b")
    moved = load_edit_config(None, str(tmp_path / "b" / "run" / "ckpt-000010"), [])
    assert moved.model.pretrained == str(tmp_path / "b" / "weights" / "sd")
    EveModel.from_config(moved.model).load_lora(tmp_path / "b" / "run" / "ckpt-000010")


def test_a_lora_that_does_not_fit_is_one_line_and_leaves_no_adapter(tiny_cfg, tiny_dir, tmp_path, capsys):
    """Layers this backbone does not have: one error line from edit.py (no diffusers log dump), exit 2."""
    from safetensors.torch import save_file

    from eve.editing import cli
    from eve.models.lora import has_lora

    save_file({"unet.down_blocks.7.attentions.0.proj_in.lora_A.weight": torch.zeros(2, 8),
               "unet.down_blocks.7.attentions.0.proj_in.lora_B.weight": torch.zeros(8, 2)},
              str(tmp_path / "other.safetensors"))
    model = EveModel.from_config(tiny_cfg.model)
    with pytest.raises(EveError, match="does not fit this backbone"):
        model.load_lora(tmp_path / "other.safetensors")
    assert not has_lora(model.unet)
    from conftest import moving_square

    from eve.data.video import write_video

    write_video(tmp_path / "in.mp4", moving_square(3, 16, 16), 8)
    code = cli.main(["--config", str(tiny_dir / "eve.yaml"), "--video", str(tmp_path / "in.mp4"), "--instruction",
                     "make it red", "--output", str(tmp_path / "o.mp4"),
                     "--checkpoint", str(tmp_path / "other.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit this backbone" in err and "Traceback" not in err
    assert "unsuccessful" not in err, "diffusers' own multi-line error is not shown"
