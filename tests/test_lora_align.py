"""LoRA alignment (issue 14, paper §4.4): the user's LoRA as a second adapter and its roles, the DreamBooth-style
trainer, the captions-only data stage, train_fdd.py in lora_align mode, edit.py on images and videos with an
aligned LoRA, and bad input."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from eve.data.instructions import Rejected, TemplateWriter, parse_subject_reply, write_subject_edits
from eve.data.video import read_video, to_uint8
from eve.demo import sample_clip
from eve.errors import EveError
from eve.models.composed import Cond, Role, Switches
from eve.models.lora import USER, add_lora, lora_parameters, lora_state_dict, write_diffusers_lora

ROOT = Path(__file__).resolve().parents[1]
TINY_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def user_lora(unet, folder: Path, seed: int = 0, scale: float = 0.5) -> Path:
    """A LoRA file for `unet`, written by diffusers' own save_lora_weights (random B, so it changes the output)."""
    add_lora(unet, 4, None, TINY_TARGETS)
    g = torch.Generator().manual_seed(seed)
    for p in lora_parameters(unet):
        p.data = torch.randn(p.shape, generator=g) * scale
    path = write_diffusers_lora(lora_state_dict(unet), unet.peft_config["student"].to_dict(), folder)
    unet.delete_adapters("student")
    return path


def inputs(model, F: int = 1):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, F, model.latent_channels, 16, 16, generator=g)
    text = model.encode_text(["a red square"])
    return x, torch.tensor([600]), Cond(text, text, torch.rand(1, F, 3, 16, 16, generator=g) * 2 - 1, torch.tensor([0]))


def test_user_lora_roles(model, tmp_path):
    """θ_LoRA is on for the LoRA teacher, plug-and-play and the student, off for the edit teacher; the LoRA teacher is
    exactly backbone + that LoRA; a fresh θ_align leaves the student equal to plug-and-play; only θ_align trains."""
    path = user_lora(model.unet, tmp_path / "user")
    x, t, cond = inputs(model)
    off = Switches(edit=False, motion=False, lora=False, known=False)
    before = {r: model(x, t, cond, r) for r in (Role.EDIT_TEACHER, Role.PLUG_AND_PLAY)}
    backbone = model(x, t, cond, switches=off)
    model.load_lora(path)  # the same file as θ_align: backbone + LoRA through the student's switch
    reference = model(x, t, cond, switches=Switches(edit=False, motion=False, lora=True, known=False))
    model.unload_lora()
    assert (reference - backbone).abs().max() > 1e-3

    model.add_lora(4, None, TINY_TARGETS)
    model.attach_user_lora(path)
    assert torch.allclose(model(x, t, cond, Role.LORA_TEACHER), reference, atol=1e-5)
    assert torch.allclose(model(x, t, cond, Role.EDIT_TEACHER), before[Role.EDIT_TEACHER], atol=1e-6)
    pnp = model(x, t, cond, Role.PLUG_AND_PLAY)
    assert (pnp - before[Role.PLUG_AND_PLAY]).abs().max() > 1e-3
    assert torch.allclose(model(x, t, cond, Role.STUDENT), pnp, atol=1e-6)  # B = 0

    with model.per_frame():  # images: every role without its motion modules
        student = model(x, t, cond, Role.STUDENT)
        loss = model(x, t, cond, Role.LORA_TEACHER).sum() * 0 + student.pow(2).mean()  # a teacher call in between
    assert torch.allclose(student, model(x, t, cond, switches=Switches(edit=True, motion=False, lora=True,
                                                                      known=True, user=True)), atol=1e-6)
    loss.backward()
    assert all(p.grad is not None for p in lora_parameters(model.unet))
    assert all(p.grad is None and not p.requires_grad for p in lora_parameters(model.unet, USER))
    model.detach_user_lora()
    assert torch.allclose(model(x, t, cond, Role.PLUG_AND_PLAY), before[Role.PLUG_AND_PLAY], atol=1e-6)
    with pytest.raises(EveError, match="the LoRA teacher needs a user LoRA"):  # never silently the bare backbone
        model(x, t, cond, Role.LORA_TEACHER)


def test_subject_writers_name_the_subject():
    edits = parse_subject_reply(TemplateWriter().subject("a dog on a bench", "sks toy", 0), "a dog on a bench",
                                "sks toy")
    assert {e["task"] for e in edits} == {"add", "local"}
    assert all("sks toy" in e["instruction"] and "sks toy" in e["output_caption"] for e in edits)
    for reply, reason in [('{"edits": [{"task": "add", "instruction": "add a dog", "output_caption": "a dog x"}]}',
                           "does not name the subject"),
                          ('{"edits": [{"task": "style", "instruction": "sks toy", "output_caption": "sks toy"}]}',
                           "expected one of add, local"),
                          ('{"edits": []}', "empty list")]:
        with pytest.raises(Rejected, match=reason):
            parse_subject_reply(reply, "a dog on a bench", "sks toy")

    class Flaky:
        def subject(self, caption, subject, attempt):
            return "no json" if attempt == 0 else TemplateWriter().subject(caption, subject, attempt)

    edits, reasons = write_subject_edits(Flaky(), "a cat", "sks toy", retries=1)
    assert edits and reasons == ["no JSON object in the reply"]


@pytest.fixture(scope="module")
def aligned(tiny_dir, tmp_path_factory):
    """The whole third use on the tiny set, through the entry points' main(): a DreamBooth-style LoRA from a few
    images, a captions-only manifest, and train_fdd.py --config configs/tiny_lora_align.yaml lora=..."""
    tmp = tmp_path_factory.mktemp("align")
    images = tmp / "images"
    images.mkdir()
    for i, f in enumerate(to_uint8(sample_clip(3, 16, 16))):
        Image.fromarray(f).save(images / f"{i}.png")
    # each entry point's main() in this process (the README walk runs them as scripts): a subprocess would spend
    # about 10 s importing
    from eve.data.triplets import main as triplets
    from eve.train.cli import main as train_fdd
    from eve.train.dreambooth import main as dreambooth

    run_main = lambda main, *argv: main([str(a) for a in argv])  # noqa: E731
    assert run_main(dreambooth, "--config", tiny_dir / "eve.yaml", "--images", images, "--prompt", "a sks square",
                    "--out", tmp / "style", "--steps", "5") == 0
    (tmp / "captions.txt").write_text("a red square\na blue circle on a dark background\n")
    assert run_main(triplets, "--captions", tmp / "captions.txt", "--out", tmp / "data", "--subject", "sks square") == 0
    model_paths = [f"model.{k}={tiny_dir / v}" for k, v in (("pretrained", "sd"), ("controlnet", "controlnet"),
                                                             ("motion_adapter", "motion_adapter"), ("dino", "dino"))]
    common = ["--config", ROOT / "configs" / "tiny_lora_align.yaml", f"data.manifest={tmp / 'data' / 'manifest.jsonl'}",
              *model_paths, "run.steps=4", "run.save_every=4", "run.sample_every=4", "fdd.sds_only_steps=2"]
    assert run_main(train_fdd, *common, f"lora={tmp / 'style'}", f"run.out_dir={tmp / 'run'}") == 0
    return {"tmp": tmp, "common": common, "ckpt": tmp / "run" / "ckpt-000004", "lora": tmp / "style",
            "images": images}


def test_lora_alignment_end_to_end(aligned):
    tmp = aligned["tmp"]
    lora = aligned["lora"] / "pytorch_lora_weights.safetensors"
    assert (aligned["lora"] / "samples.png").is_file()
    manifest = pd.read_json(tmp / "data" / "manifest.jsonl", lines=True)
    assert len(manifest) == 6 and set(manifest.task) == {"add", "local"} and "video" not in manifest
    rows = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows] == ["sds", "sds", "adversarial", "adversarial"]
    assert {"sds_lora", "g_lora", "d_lora", "gnorm_sds_lora"} <= set(rows[-1]) and "sds_video" not in rows[-1]
    before = lora.read_bytes()
    trained = load_file(str(aligned["ckpt"] / "student_lora.safetensors"))
    assert any(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)  # θ_align moved
    assert lora.read_bytes() == before and (tmp / "run" / "samples" / "step_000004.png").is_file()
    # the cache holds each data point's sampled input image, the edit teacher's edit and the LoRA teacher's image
    entries = [load_file(str(f)) for f in (tmp / "run" / "real_cache").rglob("*.safetensors")]
    assert len(entries) == 6 and all(set(e) == {"input", "edit", "lora"} and e["input"].shape[0] == 1 for e in entries)
    # one input image per input caption (2 captions, 3 edits each), whichever batch or process sampled it
    inputs = {e["input"].numpy().tobytes() for e in entries}
    assert len(inputs) == manifest.input_caption.nunique() == 2


def test_edit_py_image_and_video_with_the_aligned_lora(aligned, tiny_dir, call_main):
    """An image in, the same size out; a video edited with the aligned LoRA (the video adapter on top); the aligned
    student's image differs from plug-and-play's (the same LoRA without θ_align). edit.py's `main` in this process
    (the README walk runs the script itself): a subprocess would spend about 10 s a call importing."""
    from eve.editing.cli import main as edit_main

    def edit(*argv) -> None:
        code, _, err = call_main(edit_main, *argv)
        assert code == 0, err[-2000:]

    tmp, image = aligned["tmp"], aligned["images"] / "0.png"
    args = ["--instruction", "add sks square", "--caption", "a red square, with sks square"]
    outs = {}
    for name, extra in (("aligned", ["--checkpoint", aligned["ckpt"], "--lora", aligned["lora"]]),
                        ("pnp", ["--config", tiny_dir / "eve.yaml", "--lora", aligned["lora"]])):
        outs[name] = tmp / f"{name}.png"
        edit("--image", image, *args, *extra, "--output", outs[name])
    a, p = (read_video(outs[k]).frames for k in ("aligned", "pnp"))
    assert a.shape == p.shape == read_video(image).frames.shape
    assert (a - p).abs().max() > 0
    video = tmp / "clip"
    video.mkdir()
    for i in range(5):
        Image.open(image).save(video / f"{i:02d}.png")
    edit("--video", video, *args, "--checkpoint", aligned["ckpt"], "--lora", aligned["lora"], "--output", tmp / "v.gif")
    assert read_video(tmp / "v.gif").frames.shape[0] == 5
    # the checkpoint alone carries which LoRA it aligned (a path relative to it)
    edit("--image", image, *args, "--checkpoint", aligned["ckpt"], "--output", tmp / "again.png")
    assert (read_video(tmp / "again.png").frames - a).abs().max() == 0


def test_bad_input_is_one_line_and_leaves_no_run(aligned, tiny_dir, tmp_path, capsys, call_main):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    common = aligned["common"]
    not_lora = tiny_dir / "sd" / "unet" / "diffusion_pytorch_model.safetensors"
    other = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=16,
                                 sample_size=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
                                 norm_num_groups=8)
    other_backbone = user_lora(other, tmp_path / "other")
    te = tmp_path / "te"
    from transformers import CLIPTextModel

    encoder = CLIPTextModel.from_pretrained(tiny_dir / "sd" / "text_encoder")
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    encoder.add_adapter(LoraConfig(r=2, target_modules=["q_proj", "v_proj"]), adapter_name="te")
    unet_layers = load_file(str(aligned["lora"] / "pytorch_lora_weights.safetensors"))
    StableDiffusionPipeline.save_lora_weights(
        te, unet_lora_layers={k.removeprefix("unet."): v for k, v in unet_layers.items()},
        text_encoder_lora_layers=get_peft_model_state_dict(encoder, adapter_name="te"))
    no_input = tmp_path / "m.jsonl"
    pd.read_json(aligned["tmp"] / "data" / "manifest.jsonl", lines=True).drop(columns=["input_caption"]).to_json(
        no_input, orient="records", lines=True)
    cases = [
        ([f"lora={not_lora}"], "model.lora: checkpoint .* is not a LoRA eve can read"),
        ([f"lora={other_backbone}"], "does not fit this backbone"),
        ([f"lora={te}"], "also adapts the text encoder .* eve aligns UNet LoRAs only"),
        ([f"lora={aligned['lora']}", f"data.manifest={no_input}"], "lacks column.* input_caption .*LoRA alignment"),
        (["model.lora=null"], "fdd.mode=lora_align aligns a user's LoRA .* model.lora=PATH"),
        ([f"lora={aligned['lora']}", "fdd.mode=video"], "fdd.mode=video: the video teacher never sees that LoRA"),
    ]
    from eve.train.cli import main as train_main  # in this process: the same entry point, without a start-up each

    for extra, message in cases:
        out = tmp_path / "run"
        code = train_main([*map(str, common), *extra, f"run.out_dir={out}"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 2, lines[-5:]
        assert re.search(message, lines[-1]) and not any("Traceback" in line for line in lines), lines[-1]
        assert not out.exists(), extra
    # edit.py: a video-FDD checkpoint was never trained beside a user LoRA; an aligned one needs its own LoRA
    from eve.config import load_config, portable_yaml
    from eve.models import EveModel
    from eve.models.lora import save_lora

    video_ckpt = tmp_path / "video-ckpt"
    video_ckpt.mkdir()
    cfg = load_config(tiny_dir / "eve.yaml")
    model = EveModel.from_config(cfg.model)
    model.add_lora(cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.lora_targets)
    save_lora(model.unet, video_ckpt / "student_lora.safetensors", config_yaml=portable_yaml(cfg, video_ckpt))
    from eve.editing.cli import main as edit_main  # in this process too

    def refused(*argv) -> str:
        code, _, err = call_main(edit_main, *argv)
        lines = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err, lines[-5:]
        return lines[-1]

    image = ["--image", aligned["images"] / "0.png", "--instruction", "add sks square"]
    for extra, message in (
        (["--checkpoint", video_ckpt, "--lora", aligned["lora"]], "distilled with fdd.mode=video, beside no style"),
        (["--checkpoint", aligned["ckpt"], "--lora", other_backbone], "aligned .*, not --lora .*one alignment per LoRA"),
        (["--checkpoint", aligned["ckpt"], "--config", tiny_dir / "eve.yaml"], "give that LoRA with --lora"),
    ):
        assert re.search(message, refused(*image, *extra, "--output", tmp_path / "x.png"))
        assert not (tmp_path / "x.png").exists()
    # edit.py: an image output for a many-frame input is refused before any weight loads
    assert "is an image, but" in refused("--video", aligned["images"], "--instruction", "x", "--config",
                                         tiny_dir / "eve.yaml", "--output", tmp_path / "o.png")


def test_world_style_split_and_score_oracles(tmp_path):
    """The world's alignment data are training-side scenes, its test items held out; the score's oracles: the
    ground truth in the style scores 1 on everything, in plain colours it succeeds without the style, and the
    unedited stylised input keeps the style without succeeding."""
    from eve.worlds.shapes import lora_align as L
    from eve.worlds.shapes import world as W
    from eve.worlds.shapes.data import held_out

    assert not any(held_out(it.source) for it in L.items(0, 20))
    test = L.test_items(10)
    assert len(test) == 50 and all(held_out(it.source) for it in test) and {it.task for it in test} == set(L.TASKS)
    mean = lambda frames, key: sum(L.score(f, it)[key] for f, it in zip(frames, test)) / len(test)  # noqa: E731
    styled = [L.stylise(W.render(it.target, 0)) for it in test]
    plain = [W.render(it.target, 0) for it in test]
    unedited = [L.stylise(W.render(it.source, 0)) for it in test]
    assert mean(styled, "combined") == 1.0
    assert mean(plain, "success") == 1.0 and mean(plain, "style") == 0.0
    assert mean(unedited, "style") == 1.0 and mean(unedited, "success") == 0.0
    L.write_style_images(tmp_path / "images", count=3)
    meta = [json.loads(line) for line in (tmp_path / "images" / "metadata.jsonl").read_text().splitlines()]
    assert [m["file_name"] for m in meta] == ["000.png", "001.png", "002.png"]
    frame = read_video(tmp_path / "images" / "000.png").frames[0]
    assert float(frame.min()) >= L.stylise(torch.tensor(-1.0)) - 0.01  # drawn in the style


@pytest.mark.parametrize("fmt", ["kohya", "peft"])
def test_user_lora_in_users_formats_reads_as_stock_diffusers(fmt, tiny_cfg, tiny_dir, tmp_path):
    """A user's LoRA written by the tools that write it in the wild (kohya/A1111 keys by diffusers' converter, a peft
    adapter folder), attached beside θ_align: the LoRA teacher gives what stock diffusers gives with the same file."""
    from diffusers.utils import convert_state_dict_to_kohya
    from peft import get_peft_model
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file
    from test_lora_formats import UNET_TARGETS, lora_config, reference, stock_outputs, stock_pipeline, trained
    from test_lora_formats import trained_parts

    from eve.models import EveModel

    sd = tiny_dir / "sd"
    if fmt == "kohya":
        pipe = trained_parts(sd, text_encoder=False)
        state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(pipe.unet).items()}
        path = tmp_path / "style.safetensors"
        save_file({k: v.contiguous() for k, v in convert_state_dict_to_kohya(state).items()}, str(path))
        ref = reference(sd, path)
    else:
        ref = stock_pipeline(sd)
        torch.manual_seed(0)
        adapter = get_peft_model(ref.unet, lora_config(r=4, lora_alpha=4, target_modules=UNET_TARGETS))
        trained(ref.unet)  # the UNet carries the adapter in place: ref's outputs are the adapted ones
        path = tmp_path / "adapter"
        adapter.save_pretrained(str(path))
    _, ref_out, x = stock_outputs(ref)
    model = EveModel.from_config(tiny_cfg.model)
    model.add_lora(4, None, UNET_TARGETS)
    model.attach_user_lora(path)
    text = model.encode_text(["a red square", "make it blue"], Role.LORA_TEACHER)
    with torch.no_grad():
        out = model(x.unsqueeze(1), torch.tensor([300, 300]), Cond(text), Role.LORA_TEACHER)[:, 0]
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)


class OnlySubject:
    """A module:attr writer with personalised edits only."""

    def subject(self, caption, subject, attempt):
        return TemplateWriter().subject(caption, subject, attempt)


def test_triplets_tasks_and_writer_methods(tmp_path):
    """--tasks keeps the stylised edits asked for (an unknown one is one line); a module:attr writer without the
    method a mode calls is refused before any caption is read."""
    from eve.data.instructions import check_writer
    from eve.data.triplets import main

    captions = tmp_path / "captions.txt"
    captions.write_text("a red square\na dog on a bench\n")
    assert main(["--captions", str(captions), "--out", str(tmp_path / "out"), "--tasks", "add, Local"]) == 0
    rows = pd.read_json(tmp_path / "out" / "manifest.jsonl", lines=True)
    assert sorted(rows.task) == ["add", "add", "local", "local"]
    assert main(["--captions", str(captions), "--out", str(tmp_path / "bad"), "--tasks", "add,sculpt"]) == 2
    assert not (tmp_path / "bad" / "manifest.jsonl").exists()
    check_writer("test_lora_align:OnlySubject", needs="subject")
    with pytest.raises(EveError, match=r"has no __call__\(caption, attempt\) method"):
        check_writer("test_lora_align:OnlySubject", needs="__call__")


def test_lora_fingerprint_is_the_lora_not_its_folder(tmp_path):
    """Runs and caches count the user's LoRA by its weights: a trainer's other files beside it change nothing."""
    from diffusers import UNet2DConditionModel

    from eve.models.lora import lora_fingerprint

    unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, cross_attention_dim=16,
                                sample_size=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=4,
                                norm_num_groups=8)
    path = user_lora(unet, tmp_path / "style")
    before = lora_fingerprint(tmp_path / "style")
    (tmp_path / "style" / "metrics.jsonl").write_text("{}\n")
    assert lora_fingerprint(tmp_path / "style") == before == lora_fingerprint(path)
    user_lora(unet, tmp_path / "style", seed=1)
    assert lora_fingerprint(tmp_path / "style") != before
