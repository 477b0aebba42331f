"""Evaluation (issue 13): the metrics' oracles, the metric models written to disk in their real layouts and loaded
by their own loaders, TGVE / TGVE+ folders read as laid out, and python -m eve.eval end to end on the tiny set."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from eve.data.video import to_uint8
from eve.demo import sample_clip
from eve.eval import metrics as M

ROOT = Path(__file__).resolve().parents[1]


def test_metric_oracles():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(1, 8, generator=g)
    assert M.clip_frame(e.expand(5, -1)) == pytest.approx(1.0) == M.clip_frame(e.expand(5, -1), "all")
    varied = torch.randn(5, 8, generator=g)
    assert M.clip_frame(varied) < 0.9 and M.feature_consistency(varied) == M.clip_frame(varied)
    # all pairs vs consecutive: the definition, by brute force
    u = torch.nn.functional.normalize(varied, dim=-1)
    brute = sum(float(u[i] @ u[j]) for i in range(5) for j in range(5) if i != j) / 20
    assert M.clip_frame(varied, "all") == pytest.approx(brute, abs=1e-6)
    # the caption direction: reversing it flips ViCLIP_dir's sign; the video moving along it gives 1
    v_in, t_in, t_out = torch.randn(3, 16, generator=g)
    v_out = torch.nn.functional.normalize(v_in, dim=0) + 0.5 * (
        torch.nn.functional.normalize(t_out, dim=0) - torch.nn.functional.normalize(t_in, dim=0))
    forward = M.video_text_dir(v_out, v_in, t_out, t_in)
    assert forward == pytest.approx(-M.video_text_dir(v_out, v_in, t_in, t_out), abs=1e-6) and forward > 0.3
    assert M.video_text_dir(v_in, v_in, t_out, t_in) == 0.0
    assert M.text_frame(e.expand(3, -1), e[0], scale=100.0) == pytest.approx(100.0)
    assert M.video_text_out(v_in, 2 * v_in) == pytest.approx(1.0)


def test_warp_error_oracles():
    """Identical frames under zero flow: 0; a known translation: 0 with the true flow, not with none; the frames
    RAFT reads are warped with bilinear sampling, so a half-pixel flow interpolates."""
    frames = sample_clip(4, 24, 32)
    same = ((frames[:1] + 1) / 2).expand(4, -1, -1, -1)
    assert M.warp_error(same, torch.zeros(3, 2, 24, 32)) == pytest.approx(0.0, abs=1e-7)
    base = (sample_clip(1, 24, 40)[0] + 1) / 2
    moving = torch.stack([base[:, :, 2 * i : 2 * i + 32] for i in range(4)])  # the camera pans 2 px right a frame
    truth = torch.zeros(3, 2, 24, 32)
    truth[:, 0] = 2.0  # pixel x of frame i is pixel x + 2 of frame i - 1
    assert M.warp_error(moving, truth) < 1e-5 < M.warp_error(moving, torch.zeros(3, 2, 24, 32))
    assert M.warp_error(moving[:1], truth[:0]) == 0.0


def test_masked_structure_oracles():
    src = (sample_clip(2, 16, 16) + 1) / 2
    edited = src.clone()
    edited[:, :, :8] = 1 - edited[:, :, :8]  # the edit changes the top half only
    keep = torch.zeros(2, 16, 16, dtype=torch.bool)
    keep[:, 8:] = True
    assert M.masked_psnr(edited, src, keep) == math.inf
    assert M.masked_psnr(edited, src, ~keep) < 20
    assert math.isnan(M.masked_psnr(edited, src, torch.zeros_like(keep)))


# ---------------------------------------------------------------- metric models in their real layouts


@pytest.fixture(scope="module")
def metric_models(tmp_path_factory):
    """A tiny CLIP (also as PickScore weights), an X-CLIP, a RAFT and AlexNet state dicts, written by the
    libraries' own savers."""
    from torchvision.models import alexnet
    from torchvision.models.optical_flow import raft_small
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, VideoMAEImageProcessor,
                              XCLIPConfig, XCLIPModel, XCLIPProcessor)

    from eve.models.tiny import byte_tokenizer

    d = tmp_path_factory.mktemp("metric_models")
    torch.manual_seed(0)
    tok = byte_tokenizer()
    text = dict(vocab_size=tok.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, projection_dim=16, bos_token_id=0, eos_token_id=1,
                pad_token_id=1)  # the byte tokenizer's: CLIP pools the text at its end token
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8, projection_dim=16)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    clip.save_pretrained(d / "clip")
    CLIPProcessor(image_processor=images, tokenizer=tok).save_pretrained(d / "clip")
    torch.manual_seed(1)  # PickScore's layout: CLIP weights alone, the processor from another folder
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(d / "pickscore")
    xclip = XCLIPModel(XCLIPConfig(text_config=text, vision_config=dict(vision, num_frames=4, mit_hidden_size=16,
                                                                         mit_intermediate_size=32),
                                   projection_dim=16, prompt_layers=1, prompt_attention_heads=2,
                                   prompt_num_attention_heads=2))
    xclip.save_pretrained(d / "xclip")
    XCLIPProcessor(image_processor=VideoMAEImageProcessor(size={"shortest_edge": 32},
                                                          crop_size={"height": 32, "width": 32}),
                   tokenizer=tok).save_pretrained(d / "xclip")
    torch.save(raft_small(weights=None).state_dict(), d / "raft_small.pth")
    torch.save({k: v for k, v in alexnet(weights=None).state_dict().items() if k.startswith("features.")},
               d / "alexnet.pth")
    return d


def test_metric_models_load_and_score(metric_models, tiny_dir):
    from eve.eval.scorers import ClipScorer, DinoScorer, FlowScorer, VideoTextScorer, lpips_net

    video = (sample_clip(5, 32, 32) + 1) / 2
    still = video[:1].expand(5, -1, -1, -1)
    clip = ClipScorer(str(metric_models / "clip"), "--clip")
    assert M.clip_frame(clip.images(still)) == pytest.approx(1.0, abs=1e-5)
    assert M.clip_frame(clip.images(video)) < M.clip_frame(clip.images(still))
    t = clip.texts(["a red square", "a blue circle"])
    assert t.shape[0] == 2 and not torch.allclose(t[0], t[1])
    xclip = VideoTextScorer(str(metric_models / "xclip"), "--video-text")
    assert xclip.num_frames == 4
    v = xclip.video(video)
    assert torch.allclose(v, xclip.video(video)) and not torch.allclose(v, xclip.video(video.flip(0)))
    dino = DinoScorer(str(tiny_dir / "dino"), "--dino")
    assert M.feature_consistency(dino.features(still)) == pytest.approx(1.0, abs=1e-5)
    flow = FlowScorer(str(metric_models / "raft_small.pth"), "--raft", iterations=2)
    assert flow.flows(video).shape == (4, 2, 128, 128)  # RAFT's smallest size
    net = lpips_net(str(metric_models / "alexnet.pth"), "--lpips")
    keep = torch.ones(5, 32, 32, dtype=torch.bool)
    assert M.masked_lpips(video, video, keep, net) == pytest.approx(0.0, abs=1e-6)
    assert M.masked_lpips(video.flip(0), video, keep, net) > 0


# ---------------------------------------------------------------- TGVE / TGVE+ folders


def write_tgve(folder: Path, names=("blackswan", "car-turn")) -> Path:
    """A folder in the LOVEU-TGVE-2023 layout (section lines, frame folders, mp4s) with an InsV2V prompt dict and a
    TGVE+ table, written with the project's own video writer and pandas."""
    from eve.data.video import write_video

    folder.mkdir(parents=True)
    (folder / "DAVIS_480p" / "480p_frames").mkdir(parents=True)
    for i, name in enumerate(names):
        clip = sample_clip(6, 32, 32).roll(8 * i, dims=-1)  # a different clip per video
        if i == 0:
            frames = folder / "DAVIS_480p" / "480p_frames" / name
            frames.mkdir()
            for j, f in enumerate(to_uint8(clip)):
                Image.fromarray(f).save(frames / f"{j:05d}.jpg")
        else:
            write_video(folder / "youtube_480p" / f"{name}.mp4", clip, 8)
    header = ["Video name", "Our GT caption", "Style Change Caption", "Object Change Caption",
              "Background Change Caption", "Multiple Changes Caption"]
    lines = [",".join(header), "DAVIS Videos:,,,,,"]
    for name in names:
        lines.append(f"{name},a {name} on a road,a {name} in van gogh style,a red {name},a {name} on the moon,"
                     f"a red {name} on the moon in van gogh style")
    (folder / "LOVEU-TGVE-2023_Dataset.csv").write_text("\n".join(lines) + "\n")
    (folder / "loveu_tgve_edit_prompt_dict.json").write_text(
        json.dumps({names[0]: {f"a red {names[0]}": f"make the {names[0]} red"}}))
    pd.DataFrame([{"video_name": n, "task": t, "instruction": f"{t} something", "output_caption": f"a {n}, {t}"}
                  for n in names for t in ("Object Removal", "Object Addition", "Texture Alteration")]).to_csv(
        folder / "tgve_plus.csv", index=False)
    return folder


def test_tgve_layout_is_read(tmp_path):
    from eve.errors import EveError
    from eve.eval.edits import read_edits

    edits = read_edits(write_tgve(tmp_path / "tgve"))
    assert len(edits) == 2 * 7 and sorted(set(edits.task)) == ["add", "background", "global", "local", "remove",
                                                                "style", "texture"]
    row = edits.set_index("id").loc["blackswan-local"]
    assert row.instruction == "make the blackswan red" and row.caption == "a red blackswan"
    assert row.input_caption == "a blackswan on a road" and Path(row.video).is_dir()
    assert edits.set_index("id").loc["car-turn-style"].instruction == "a car-turn in van gogh style"  # no dict entry
    assert edits.set_index("id").loc["car-turn-texture"].video.endswith("car-turn.mp4")
    assert edits.input_caption.notna().all()
    (tmp_path / "tgve" / "tgve_plus.csv").write_text("video_name,what\nblackswan,x\n")
    with pytest.raises(EveError, match=r"tgve_plus.csv: no column task"):
        read_edits(tmp_path / "tgve")
    (tmp_path / "tgve" / "tgve_plus.csv").write_text("video_name,task,instruction,output_caption\nblackswan,add\n")
    with pytest.raises(EveError, match=r"row 1 \(blackswan, add\) has an empty instruction or output caption"):
        read_edits(tmp_path / "tgve")
    (tmp_path / "tgve" / "tgve_plus.csv").write_text("video_name,task,instruction,output_caption\nswan,add,x,y\n")
    with pytest.raises(EveError, match=r"video 'swan' is not under"):
        read_edits(tmp_path / "tgve")
    with pytest.raises(EveError, match="without LOVEU-TGVE-2023_Dataset.csv"):
        read_edits(tmp_path)


# ---------------------------------------------------------------- python -m eve.eval end to end


def run(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_eval_end_to_end(metric_models, tiny_dir, tmp_path, call_main):
    """Every method and metric on a TGVE-layout folder, then a re-run that edits and scores nothing again."""
    from eve.config import load_config
    from eve.eval.__main__ import main as eval_main
    from eve.models import EveModel
    from eve.models.lora import save_lora

    cfg = load_config(tiny_dir / "eve.yaml")
    model = EveModel.from_config(cfg.model)
    model.add_lora(cfg.model.lora_rank, cfg.model.lora_alpha, cfg.model.lora_targets)
    for p in model.unet.parameters():
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    (tmp_path / "ckpt").mkdir()
    save_lora(model.unet, tmp_path / "ckpt" / "student_lora.safetensors")
    tgve = write_tgve(tmp_path / "tgve", names=("blackswan",))
    out = tmp_path / "eval"
    argv = ["-m", "eve.eval", "--config", tiny_dir / "eve.yaml", "--edits", tgve, "--out", out, "--frames", "4",
            "--limit", "3",
            "--methods", f"s:student={tmp_path / 'ckpt'}", "pnp", "teacher", "sdedit", "source",
            "--clip", metric_models / "clip", "--pickscore", metric_models / "pickscore", "--pickscore-processor",
            metric_models / "clip", "--video-text",
            metric_models / "xclip", "--dino", tiny_dir / "dino", "--raft", metric_models / "raft_small.pth",
            "--lpips", metric_models / "alexnet.pth", "edit.steps=2", "edit.teacher_steps=2"]
    r = run(*argv)
    assert r.returncode == 0, r.stderr[-3000:]
    scores = pd.read_csv(out / "results.csv")
    assert len(scores) == 5 * 3 and set(scores.method) == {"s", "pnp", "teacher", "sdedit", "source"}
    for column in ("pickscore", "clip_frame", "viclip_dir", "viclip_out", "clip_text", "dino_consistency",
                   "warp_error"):
        assert scores[column].notna().all(), column
    src = scores[scores.method == "source"]
    assert (src.viclip_dir == 0).all()  # the unedited video has no direction
    for method in ("s", "pnp", "teacher", "sdedit"):
        assert len(list((out / "videos" / method).glob("*.mp4"))) == 3
    # methods differ from each other and from the source
    assert scores.groupby("method").clip_text.mean().nunique() == 5
    table = (out / "table.md").read_text()
    assert "EVE (paper)" in table and "20.88" in table and "## pickscore per task" in table
    assert str(metric_models / "xclip") in table
    stamp = {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.mp4")}
    lines = (out / "scores.jsonl").read_text()
    with open(out / "scores.jsonl", "a") as fh:
        fh.write('{"method": "s", "id": "bl')  # a kill while a line was written
    code, _, err = call_main(eval_main, *argv[2:])  # the re-runs in this process
    assert code == 0, err[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.mp4")} == stamp
    assert (out / "scores.jsonl").read_text() == lines
    # a re-run that would mix settings is refused before any work: another seed, another edit behind an id
    code, _, err = call_main(eval_main, *argv[2:], "--seed", "1")
    assert code == 2 and "made with other settings (seed differ)" in err.strip().splitlines()[-1]
    table = pd.read_csv(tgve / "LOVEU-TGVE-2023_Dataset.csv", dtype=str, keep_default_na=False)
    table.iloc[1, 2] = "a blackswan drawn in crayon"
    table.to_csv(tgve / "LOVEU-TGVE-2023_Dataset.csv", index=False)
    code, _, err = call_main(eval_main, *argv[2:])
    assert code == 2 and "edit blackswan-style is not the edit" in err.strip().splitlines()[-1]
    assert {p: p.stat().st_mtime_ns for p in (out / "videos").rglob("*.mp4")} == stamp


def test_masked_structure_end_to_end(metric_models, tmp_path):
    """An eve manifest with a mask column: the unedited source keeps everything outside the mask (PSNR inf, LPIPS
    0); the edit teacher's edit does not, quite."""
    from eve.data.video import write_video

    clip = sample_clip(4, 32, 32)
    write_video(tmp_path / "clip.mp4", clip, 8)
    mask = -torch.ones_like(clip)
    mask[:, :, 8:24, 8:24] = 1  # the edit's region, white
    write_video(tmp_path / "mask.mp4", mask, 8)
    pd.DataFrame([{"video": "clip.mp4", "instruction": "make the square blue", "caption": "a blue square",
                   "task": "local", "mask": "mask.mp4", "id": "sq"}]).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "eval"
    r = run("-m", "eve.eval", "--edits", tmp_path / "m.csv", "--out", out, "--methods", "teacher", "source",
            "--lpips", metric_models / "alexnet.pth", "edit.teacher_steps=2")
    assert r.returncode == 0, r.stderr[-3000:]
    scores = pd.read_csv(out / "results.csv").set_index("method")
    assert scores.loc["source", "psnr_outside"] == math.inf and scores.loc["source", "lpips_outside"] == 0
    assert scores.loc["teacher", "psnr_outside"] < math.inf and scores.loc["teacher", "lpips_outside"] > 0
    assert (out / "grid.png").is_file()


def test_eval_bad_input_is_one_line(tmp_path, capsys):
    """Each is one line and exit 2, before any model loads and before the output folder is made."""
    import re

    from eve.eval.__main__ import main

    manifest = ROOT / "data" / "shapes" / "fdd" / "manifest.csv"
    cases = [
        (["--edits", tmp_path / "none"], "--edits .*none not found"),
        (["--edits", tmp_path], "without LOVEU-TGVE-2023_Dataset.csv"),
        (["--edits", manifest, "--methods", "student"], "student takes a checkpoint"),
        (["--edits", manifest, "--methods", "magic"], "unknown method 'magic'"),
        (["--edits", manifest, "--methods", "student=" + str(tmp_path / "ckpt")], "checkpoint not found"),
        (["--edits", manifest, "--clip", tmp_path / "no-clip"], r"weight folder not found: .*no-clip \(named by --clip\)"),
        (["--edits", manifest, "--raft", tmp_path / "raft.pth"], "--raft .* is not a file"),
        (["--edits", manifest, "--limit", "0"], "--limit must be >= 1"),
    ]
    for extra, message in cases:
        assert main(["--out", str(tmp_path / "out"), *map(str, extra)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(message, err[0]), err
        assert not (tmp_path / "out").exists()
