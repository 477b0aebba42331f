"""train_fdd.py on the tiny set: both phases, checkpoints, resume after a kill, ablations, bad manifests."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from eve.config import load_config
from eve.data.toy import write_toy_dataset
from eve.errors import EveError
from eve.models.lora import EVE_LORA_NAME
from eve.train import checkpoint
from eve.train.loop import train
from eve.train.real_samples import RealSampleCache, datapoint_key, fill_cache, teacher_fingerprint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tiny_dir):
    return write_toy_dataset(tiny_dir / "data", num_videos=2, num_frames=8, size=16)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("real_cache")


def overrides(tiny_dir, manifest, out, cache, *extra):
    return [
        f"model.pretrained={tiny_dir / 'sd'}", f"model.controlnet={tiny_dir / 'controlnet'}",
        f"model.motion_adapter={tiny_dir / 'motion_adapter'}", f"model.dino={tiny_dir / 'dino'}",
        f"data.manifest={manifest}", f"run.out_dir={out}", f"fdd.cache_dir={cache}",
        "run.steps=4", "run.batch_size=2", "run.micro_batch=1", "run.save_every=2", "run.sample_every=0",
        "fdd.sds_only_steps=2", "fdd.real_steps=2", *extra,
    ]


def cfg_for(tiny_dir, manifest, out, cache, *extra):
    return load_config(ROOT / "configs" / "tiny.yaml", overrides(tiny_dir, manifest, out, cache, *extra))


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_crosses_the_switch_and_only_the_lora_changes(tiny_dir, toy, shared_cache, tmp_path):
    from eve.models import EveModel

    cfg = cfg_for(tiny_dir, toy, tmp_path / "run", shared_cache, "run.sample_every=4")
    last = train(cfg)
    rows = metrics(tmp_path / "run")
    assert [r["phase"] for r in rows] == ["sds", "sds", "adversarial", "adversarial"]
    for key in ("sds_edit", "sds_video", "gnorm_sds_edit", "gnorm_sds_video", "step_time", "gnorm_student"):
        assert all(key in r for r in rows)
    for key in ("g_edit", "g_video", "d_edit", "d_video", "logit_edit_real", "logit_edit_fake", "logit_video_real",
                "logit_video_fake", "r1"):
        assert all(key in r for r in rows[2:]) and not any(key in r for r in rows[:2])
    assert all(r["gnorm_student"] > 0 for r in rows), "the LoRA receives gradient every step"
    assert (tmp_path / "run" / "samples" / "step_000004.png").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()

    # only LoRA tensors differ from the frozen weights on disk
    base = EveModel.from_config(cfg.model).state_dict()
    trained = EveModel.from_config(cfg.model)
    from eve.models.lora import load_lora

    load_lora(trained.unet, last)
    for k, v in trained.state_dict().items():
        if "lora_" in k:
            continue
        k0 = k.replace(".base_layer", "")
        assert torch.equal(v, base[k0]), f"frozen weight {k} changed"
    lora = load_file(str(last / "student_lora.safetensors"))
    assert any(v.abs().max() > 0 for k, v in lora.items() if "lora_B" in k), "LoRA B moved away from zero"

    # checkpoint contents
    files = {p.name for p in last.iterdir()}
    assert {"student_lora.safetensors", "discriminator.safetensors", "train_state.safetensors", "train_state.json",
            "pytorch_lora_weights.safetensors"} <= files
    state = load_file(str(last / "train_state.safetensors"))
    assert any(k.startswith("opt_g/") for k in state) and any(k.startswith("opt_d/") for k in state)
    assert any(k.startswith("rng/") for k in state)
    assert [p.name for p in checkpoint.checkpoints(tmp_path / "run")] == ["ckpt-000002", "ckpt-000004"]


def test_edit_with_the_trained_checkpoint_alone(tiny_dir, toy, shared_cache, tmp_path, capsys):
    from eve.data.video import read_video
    from eve.editing.cli import main

    last = train(cfg_for(tiny_dir, toy, tmp_path / "run", shared_cache, "run.steps=1", "fdd.use_adversarial=false"))
    out = tmp_path / "edited.mp4"
    video = tiny_dir / "data" / "clips" / "clip000.mp4"
    capsys.readouterr()
    code = main(["--checkpoint", str(last), "--video", str(video), "--instruction", "make the square blue",
                 "--task", "local", "--output", str(out)])
    assert code == 0 and read_video(out).frames.shape == read_video(video).frames.shape
    tiny = load_config(ROOT / "configs" / "tiny.yaml")
    said = capsys.readouterr().err
    assert f"applied LoRA {last / EVE_LORA_NAME} (eve" in said, said
    assert f"rank {tiny.model.lora_rank}, alpha {tiny.model.lora_rank}," in said, said
    assert "step 1" in said and "to_q" in said, said


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tiny_dir, toy, shared_cache, tmp_path):
    # With an EMA of the LoRA and distribution matching: the resumed run must restore the raw weights, the average,
    # the fake scores and every optimizer, a superset of what a run without them restores (one run pair instead of
    # several keeps the suite inside its budget).
    extra = ("run.steps=6", "run.save_every=2", "fdd.sds_only_steps=3", "fdd.ema_decay=0.5", "fdd.score=dmd")
    full = train(cfg_for(tiny_dir, toy, tmp_path / "full", shared_cache, *extra))

    out = tmp_path / "killed"
    args = [sys.executable, str(ROOT / "train_fdd.py"), "--config", str(ROOT / "configs" / "tiny.yaml"),
            *overrides(tiny_dir, toy, out, shared_cache, *extra)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (out / "ckpt-000002" / "train_state.json").is_file():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = [p.name for p in checkpoint.checkpoints(out)]
    assert done and done[-1] != "ckpt-000006", "the kill landed after the run finished; nothing was tested"

    resumed = train(cfg_for(tiny_dir, toy, out, shared_cache, *extra))
    a, b = load_file(str(full / "student_lora.safetensors")), load_file(str(resumed / "student_lora.safetensors"))
    assert a.keys() == b.keys() and not any("fake" in k for k in a), "the student's file holds the student only"
    first = load_file(str(full.parent / "ckpt-000002" / "student_lora.safetensors"))
    assert any(not torch.equal(first[k], a[k]) for k in a), "the student trains under fdd.score=dmd"
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)
    da, db = load_file(str(full / "discriminator.safetensors")), load_file(str(resumed / "discriminator.safetensors"))
    for k in da:
        torch.testing.assert_close(da[k], db[k], atol=1e-5, rtol=1e-4)
    sa, sb = load_file(str(full / "train_state.safetensors")), load_file(str(resumed / "train_state.safetensors"))
    trained = [k for k in sa if k.startswith(("student/", "fake_edit/", "fake_video/", "opt_f/"))]
    for prefix in ("student/", "fake_edit/", "fake_video/", "opt_f/"):
        assert any(k.startswith(prefix) for k in trained), f"{prefix}* is kept for resuming"
    for k in trained:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-5, rtol=1e-4)
    steps = [r["step"] for r in metrics(out)]
    assert steps == sorted(set(steps)) == list(range(1, 7)), "metrics.jsonl has each step once after the resume"


def scorer(cfg, model):
    """A validation scorer for the tests (run.validation=test_train:scorer): the size of the student LoRA's B, 0
    before training and growing with it, so the scores say which weights were scored."""
    return lambda m: {"combined": float(sum(p.detach().abs().sum() for n, p in m.unet.named_parameters()
                                            if "lora_B.student." in n))}


def test_validation_inside_training_logs_scores_and_chooses_a_checkpoint(tiny_dir, toy, shared_cache, tmp_path):
    from PIL import Image

    from eve.train.validation import best_checkpoint

    out = tmp_path / "run"
    train(cfg_for(tiny_dir, toy, out, shared_cache, "run.eval_every=2", "run.validation=test_train:scorer",
                  "run.steps=6", "fdd.sds_only_steps=3", "fdd.disc_warmup_steps=1"))
    rows = metrics(out)
    val = [r for r in rows if "val_combined" in r]
    assert [r["step"] for r in val] == [0, 2, 4, 6], "before training and every eval_every steps"
    assert val[0]["val_combined"] == 0 and all(r["val_combined"] > 0 for r in val[1:]), "the student is scored"
    assert {"logit_edit_real", "logit_edit_fake"} <= rows[-1].keys()
    assert Image.open(out / "curves.png").size[0] > 500
    ckpt, row = best_checkpoint(out)
    best = max(val[1:], key=lambda r: r["val_combined"])
    assert ckpt == out / f"ckpt-{best['step']:06d}" and row["val_combined"] == best["val_combined"]

    # the run folder stands for that checkpoint: exported as a portable fp16 LoRA folder (what data/shapes/student is)
    from eve.editing.cli import load_edit_config
    from eve.export import export
    from eve.models.lora import read_lora

    kept = tmp_path / "elsewhere" / "student"
    export(str(out), str(kept), fp16=True)
    assert json.loads((kept / "chosen.json").read_text())["checkpoint"] == str(ckpt)
    ours, theirs = read_lora(kept / EVE_LORA_NAME)[0], read_lora(ckpt / EVE_LORA_NAME)[0]
    assert ours.keys() == theirs.keys() and all(ours[k].dtype == torch.float16 for k in ours)
    assert all(torch.equal(ours[k], theirs[k].half()) for k in ours)
    assert read_lora(kept / "pytorch_lora_weights.safetensors")[0].keys() == ours.keys()
    moved = load_edit_config(None, str(kept), [])
    assert moved.model.pretrained == str(tiny_dir / "sd"), "the config's weight paths resolve from the new folder"


def test_a_run_folder_only_resumes_the_same_run(tiny_dir, toy, shared_cache, tmp_path):
    """A changed manifest, setting or weight folder in a used out_dir is refused before any weight loads; the run's
    length may change (continuing to more steps); run.resume=<checkpoint> continues on purpose and adopts the new
    identity."""
    from eve.train.identity import RunIdentity

    out = tmp_path / "run"
    base = ("fdd.use_adversarial=false",)
    train(cfg_for(tiny_dir, toy, out, shared_cache, "run.steps=2", *base))
    before = RunIdentity.read(out)
    other = _first_rows(toy, tmp_path, 1)
    for extra, changed in (([f"data.manifest={other}"], "manifest"), (["fdd.k=2"], "config"),
                           ([f"model.dino={tiny_dir / 'sd'}"], "weights")):
        with pytest.raises(EveError, match=rf"holds another run \(changed: {changed}\).*run\.resume=.*ckpt-000002"):
            train(cfg_for(tiny_dir, toy, out, shared_cache, "run.steps=3", *base, *extra))
    assert [p.name for p in checkpoint.checkpoints(out)] == ["ckpt-000002"] and RunIdentity.read(out) == before
    with pytest.raises(EveError, match="run.resume=never, but .* holds checkpoints"):
        train(cfg_for(tiny_dir, toy, out, shared_cache, "run.steps=3", "run.resume=never", *base))

    longer = train(cfg_for(tiny_dir, toy, out, shared_cache, "run.steps=3", "run.save_every=3", *base))
    assert longer.name == "ckpt-000003" and [r["step"] for r in metrics(out)] == [1, 2, 3]

    on_purpose = train(cfg_for(tiny_dir, toy, out, shared_cache, "run.steps=4", "run.save_every=4", *base,
                               f"data.manifest={other}", f"run.resume={longer}"))
    assert on_purpose.name == "ckpt-000004" and RunIdentity.read(out) != before
    r = subprocess.run([sys.executable, str(ROOT / "train_fdd.py"), "--config", str(ROOT / "configs" / "tiny.yaml"),
                        *overrides(tiny_dir, toy, out, shared_cache, "run.steps=5", *base)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "changed: manifest" in r.stderr, r.stderr[-2000:]


def test_a_gpu_launch_on_a_machine_without_gpus_is_one_line(monkeypatch):
    """accelerate launch with a GPU config where CUDA is missing: the first process raises one EveError, the
    others leave quietly (exit 0) instead of each printing the same traceback; a CPU launch is left alone."""
    from eve.train.cli import launched_on_missing_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(EveError, match="launched as 8 GPU processes, but this machine has no CUDA GPU"):
        launched_on_missing_gpus()
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(SystemExit) as quiet:
        launched_on_missing_gpus()
    assert quiet.value.code == 0
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    launched_on_missing_gpus()


def test_a_run_that_fails_before_its_first_step_leaves_no_folder(tiny_dir, toy, shared_cache, tmp_path):
    """The dino folder exists (so every check before loading passes) but holds no weights: the run fails while its
    models load, after its folder was made, and removes the folder."""
    out, empty = tmp_path / "run", tmp_path / "empty_dino"
    empty.mkdir()
    with pytest.raises(EveError, match="cannot load model.dino"):
        train(cfg_for(tiny_dir, toy, out, shared_cache, f"model.dino={empty}"))
    assert not out.exists()
    with pytest.raises(EveError, match="no_such_dino"):  # a missing folder fails earlier still
        train(cfg_for(tiny_dir, toy, out, shared_cache, f"model.dino={tmp_path / 'no_such_dino'}"))
    assert not out.exists()


def test_checkpoints_export_the_ema_and_keep_the_trained_lora(tiny_dir, toy, shared_cache, tmp_path):
    """fdd.ema_decay = d: the LoRA files hold ema_n = d ema_(n-1) + (1 - d) theta_n, train_state holds theta_n."""
    from eve.models.lora import read_lora

    d, out = 0.5, tmp_path / "run"
    train(cfg_for(tiny_dir, toy, out, shared_cache, "run.steps=2", "run.save_every=1", "run.keep_last=0",
                  "fdd.use_adversarial=false", f"fdd.ema_decay={d}"))
    ckpts = [out / "ckpt-000001", out / "ckpt-000002"]
    ema = [load_file(str(c / EVE_LORA_NAME)) for c in ckpts]
    raw = [{k.removeprefix("student/"): v for k, v in load_file(str(c / "train_state.safetensors")).items()
            if k.startswith("student/")} for c in ckpts]
    assert ema[0].keys() == raw[0].keys() == raw[1].keys()
    for k in ema[0]:
        # step 1 starts from the initial LoRA: B = 0, and A gets no gradient while B = 0, so theta_0 is known
        theta0 = torch.zeros_like(raw[0][k]) if ".lora_B." in k else raw[0][k]
        torch.testing.assert_close(ema[0][k], d * theta0 + (1 - d) * raw[0][k])
        torch.testing.assert_close(ema[1][k], d * ema[0][k] + (1 - d) * raw[1][k])
    assert any(not torch.equal(ema[1][k], raw[1][k]) for k in ema[1]), "the export is the average, not the LoRA"
    exported, _ = read_lora(ckpts[1] / "pytorch_lora_weights.safetensors")
    assert exported.keys() == ema[1].keys() and all(torch.equal(exported[k], ema[1][k]) for k in exported)


@pytest.mark.parametrize("ablation", [["fdd.use_sds=false"], ["fdd.use_adversarial=false"], ["fdd.timesteps=fixed"],
                                      ["fdd.real_samples=online", "fdd.grad_checkpointing=true", "fdd.disc_frames=2",
                                       "fdd.gen_loss=add_linear", "fdd.augment=false", "fdd.r1_gamma=0"]])
def test_ablation_switches_run(tiny_dir, toy, shared_cache, tmp_path, ablation):
    train(cfg_for(tiny_dir, toy, tmp_path / "run", shared_cache, "run.steps=3", *ablation))
    rows = metrics(tmp_path / "run")
    assert len(rows) == 3
    if "fdd.use_sds=false" in ablation:
        assert all(r["phase"] == "adversarial" and "sds_edit" not in r for r in rows)
    if "fdd.use_adversarial=false" in ablation:
        assert all(r["phase"] == "sds" for r in rows)
    if "fdd.timesteps=fixed" in ablation:
        assert all(r["t_student"] == [999, 666, 332] for r in rows)
    else:
        assert all(r["t_student"][0] == 999 for r in rows)


def test_discriminator_warmup_trains_only_the_heads(tiny_dir, toy, shared_cache, tmp_path):
    """fdd.disc_warmup_steps: D trains alone before the hinge terms reach the student, whose update is unchanged."""
    short = ("run.steps=2", "fdd.sds_only_steps=2")
    warm = train(cfg_for(tiny_dir, toy, tmp_path / "warm", shared_cache, *short, "fdd.disc_warmup_steps=1"))
    cold = train(cfg_for(tiny_dir, toy, tmp_path / "cold", shared_cache, *short))
    rows = metrics(tmp_path / "warm")
    assert [r["phase"] for r in rows] == ["sds", "disc_warmup"]
    assert "d_edit" in rows[1] and "g_edit" not in rows[1] and "d_edit" not in rows[0]
    lora_w, lora_c = (load_file(str(c / EVE_LORA_NAME)) for c in (warm, cold))
    for k in lora_c:
        torch.testing.assert_close(lora_w[k], lora_c[k], atol=0, rtol=0)
    d_w, d_c = (load_file(str(c / "discriminator.safetensors")) for c in (warm, cold))
    assert any(not torch.equal(d_w[k], d_c[k]) for k in d_c), "the warm-up step trained the heads"


def test_warmup_longer_than_the_sds_phase_is_refused(tiny_dir, toy, shared_cache, tmp_path):
    with pytest.raises(EveError, match="fdd.disc_warmup_steps must be in"):
        train(cfg_for(tiny_dir, toy, tmp_path / "run", shared_cache, "fdd.disc_warmup_steps=3"))


def test_discriminator_probe_prints_its_table(tiny_dir, toy, shared_cache, tmp_path):
    args = overrides(tiny_dir, toy, tmp_path / "run", shared_cache, "run.micro_batch=2")
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "world" / "disc_probe.py"), "--config", str(ROOT / "configs" / "tiny.yaml"),
                        "--batches", "2", "--held-out", "1", "--epochs", "2", "--pixels", "--controls", *args],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    features, pixels = r.stdout.split("features:\n", 1)[1].split("pixel patches (control):\n")
    pixels, controls = pixels.split("detail control", 1)
    assert re.search(r"held-out D_e \d\.\d{3}, D_v \d\.\d{3}", controls)
    blur = controls.split("blur control", 1)[1]  # the blur control trains fresh heads: its own table
    for text in (features, pixels, blur):  # one table per critic: the features', the pixels', the blur control's
        table = [line for line in text.splitlines() if line.startswith("| ")]
        epochs = [line.split("|")[1].strip() for line in table[1:]]
        assert table[0].startswith("| epoch |") and epochs == ["0", "1", "2"]


def test_pixel_patches_are_the_image_itself(monkeypatch):
    """The control critic's tokens hold every pixel once: folded back they give the image exactly."""
    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    from disc_probe import PixelPatches

    images = torch.rand(2, 3, 16, 24) * 2 - 1
    tokens, _ = PixelPatches(4, (16, 24))(images)[0]
    back = torch.nn.functional.fold(tokens.transpose(1, 2), (16, 24), 4, stride=4)
    assert torch.equal(back, images)


def test_detail_control_fits_a_threshold_per_task(monkeypatch):
    """Oracle: on "add" the reals carry grain and the fakes do not, on "remove" the other way round, and frame 0
    (never read) the other way again. Thresholds fitted per task (with their sign) on the training batches separate
    every held-out frame and clip, where one threshold for both cannot; a task seen only in the held-out batches
    gets the threshold fitted over every task."""
    import random
    from types import SimpleNamespace

    from eve.worlds.shapes import world as W
    from eve.worlds.shapes.data import draw

    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    from disc_probe import accuracy, detail_control, fit_threshold
    from eve.worlds.shapes.measure import fine_detail

    assert fit_threshold(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.0])) == (1.0, 0.5)
    assert fit_threshold(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 2.0, 3.0])) == (-1.0, 0.5)
    rng = random.Random(0)
    scenes = [s for s in (draw(W.source_scene, rng) for _ in range(60)) if s.bg_pattern is None][:12]
    grained = torch.stack([W.render_video(s, 3) for s in scenes]).view(6, 2, 3, 3, W.SIZE, W.SIZE)
    plain = torch.stack([W.render_video(W.without_grain(s), 3) for s in scenes]).view(6, 2, 3, 3, W.SIZE, W.SIZE)
    b = SimpleNamespace(task=torch.tensor([0, 1]))  # add, remove
    data = []
    for g, p in zip(grained, plain):
        real, fake = torch.stack([g[0], p[1]]), torch.stack([p[0], g[1]])
        real[:, 0], fake[:, 0] = fake[:, 0].clone(), real[:, 0].clone()  # frame 0 points the wrong way
        data.append((b, fake, fake, real, real))
    c = detail_control(data, held_out=2)
    assert c["edit"] == 1.0 and c["video"] == 1.0 and c["edit paired"] == 0.5
    both = torch.cat([fine_detail(d[3][:, 1:]).flatten() for d in data]), torch.cat(
        [fine_detail(d[1][:, 1:]).flatten() for d in data])
    sign, thr = fit_threshold(*both)
    assert accuracy(sign * (both[0] - thr), sign * (both[1] - thr)) < 0.8  # one threshold for both tasks
    add_only = [(SimpleNamespace(task=torch.tensor([0])), *(x[:1] for x in d[1:])) for d in data]
    relabelled = add_only[:4] + [(SimpleNamespace(task=torch.tensor([2])), *d[1:]) for d in add_only[4:]]
    assert detail_control(relabelled, held_out=2)["edit"] == 1.0  # "background", never trained on: add's fit


def test_probe_scores_by_task_and_paired(monkeypatch):
    """A critic whose logit is the frame's mean pixel: two clips, each real frame 0.1 above its fake, one clip's pair
    straddling 0 and the other's both above. Oracle: unpaired D_e accuracy 0.75 (1.0 on the straddling task, 0.5 on
    the other), paired 1.0; D_v scored per clip."""
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    from disc_probe import score

    class MeanCritic(torch.nn.Module):
        def edit(self, out, src, text):
            return out.mean((1, 2, 3))[:, None]

        def video(self, clip, text):
            return clip.mean((1, 2, 3, 4))[:, None]

    level = torch.tensor([0.05, 0.5]).view(2, 1, 1, 1, 1)  # clip 0 (task add) straddles 0, clip 1 (remove) does not
    real = level.expand(2, 3, 3, 4, 4).clone()
    fake = real - 0.1
    b = SimpleNamespace(task=torch.tensor([0, 1]), instruction_pooled=torch.zeros(2, 5),
                        caption_pooled=torch.zeros(2, 5), frames=torch.zeros(2, 3, 3, 4, 4))
    s = score(MeanCritic(), [(b, fake, fake, real, real)], frames=[1, 2])
    assert s["edit acc"] == 0.75 and s["edit paired"] == 1.0
    assert s["edit by task"] == {"add": 1.0, "remove": 0.5}
    assert s["video acc"] == 0.75 and abs(s["edit gap"] - 0.1) < 1e-6


def bad_manifest(tmp_path, toy, case):
    df = pd.read_csv(toy, keep_default_na=False)
    df["video"] = [str((Path(toy).parent / v).resolve()) for v in df["video"]]
    if case == "missing column":
        df = df.drop(columns=["instruction"])
    elif case == "missing file":
        df.loc[3, "video"] = str(tmp_path / "gone.mp4")
    elif case == "unknown task":
        df.loc[5, "task"] = "sculpt"
    elif case == "empty instruction":
        df.loc[1, "instruction"] = ""
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case,message", [("missing column", "lacks column(s) instruction"),
                                          ("missing file", "row 3, column 'video': file not found"),
                                          ("unknown task", "row 5, column 'task' has unknown task 'sculpt'"),
                                          ("empty instruction", "row 1, column 'instruction' is empty")])
def test_bad_manifest_fails_before_training(tiny_dir, toy, shared_cache, tmp_path, case, message, capsys):
    from eve.train.cli import main

    path = bad_manifest(tmp_path, toy, case)
    t0 = time.perf_counter()
    code = main(["--config", str(ROOT / "configs" / "tiny.yaml"), *overrides(tiny_dir, path, tmp_path / "run", shared_cache)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists(), "nothing written before the manifest was validated"
    assert time.perf_counter() - t0 < 10


def test_cache_is_keyed_by_teacher_identity(tiny_dir, toy, tmp_path):
    cfg = cfg_for(tiny_dir, toy, tmp_path / "run", tmp_path / "cache")
    small = replace(cfg, data=replace(cfg.data, manifest=str(_first_rows(toy, tmp_path, 1))))
    assert fill_cache(small, progress=False) == 1
    assert fill_cache(small, progress=False) == 0, "a second pass reuses the cache"
    fp = teacher_fingerprint(small)
    assert teacher_fingerprint(replace(small, fdd=replace(small.fdd, edit_guidance=3.0))) != fp
    assert teacher_fingerprint(replace(small, fdd=replace(small.fdd, real_steps=5))) != fp
    # the teachers count by content: a copy of the edit adapter elsewhere, touched, is the same teacher ...
    import shutil

    from diffusers import ControlNetModel

    same = tmp_path / "controlnet_copy"
    shutil.copytree(small.model.controlnet, same)
    os.utime(same / "config.json", ns=(0, 10**9))
    assert teacher_fingerprint(replace(small, model=replace(small.model, controlnet=str(same)))) == fp
    # ... and one whose weights changed is not
    cn = ControlNetModel.from_pretrained(small.model.controlnet)
    with torch.no_grad():
        next(cn.parameters()).add_(1e-3)
    cn.save_pretrained(tmp_path / "controlnet_changed")
    changed = replace(small, model=replace(small.model, controlnet=str(tmp_path / "controlnet_changed")))
    assert teacher_fingerprint(changed) != fp
    row = pd.read_csv(small.data.manifest, keep_default_na=False).iloc[0].to_dict() | {"start": 0}
    hit = RealSampleCache(tmp_path / "cache").get(datapoint_key(row, fp))
    assert hit is not None and hit["edit"].shape == hit["video"].shape == (4, 3, 16, 16)


def _first_rows(toy, tmp_path, n):
    df = pd.read_csv(toy, keep_default_na=False).head(n)
    df["video"] = [str((Path(toy).parent / v).resolve()) for v in df["video"]]
    path = tmp_path / "small.csv"
    df.to_csv(path, index=False)
    return path


def test_two_process_ddp_keeps_replicas_in_sync(tiny_dir, toy, shared_cache, tmp_path):
    """Real torch.distributed data parallelism (gloo, 2 CPU processes) through both phases, with distribution
    matching's fake scores, which train outside DDP and are averaged by hand."""
    out = tmp_path / "ddp"
    env = dict(os.environ, ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(ROOT / "train_fdd.py"),
         "--config", str(ROOT / "configs" / "tiny.yaml"),
         *overrides(tiny_dir, toy, out, shared_cache, "run.steps=3", "run.save_every=3", "fdd.score=dmd")],
        capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "replicas in sync" in r.stderr and "on 2 processes" in r.stderr
    assert [p.name for p in checkpoint.checkpoints(out)] == ["ckpt-000003"]
    assert [row["phase"] for row in metrics(out)] == ["sds", "sds", "adversarial"]


def test_bad_settings_fail_before_training(tiny_dir, toy, shared_cache, tmp_path, capsys):
    """Optimizer values and an out_dir that cannot be written are one line before any weight loads."""
    from eve.train.cli import main

    (tmp_path / "file").write_text("x")
    for extra, out, message in (
        (["optim.lr=-1e-4"], tmp_path / "run", "optim.lr must be > 0, got -0.0001"),
        (["optim.d_betas=[0.0,1.5]"], tmp_path / "run", "optim.d_betas must be two numbers in [0, 1)"),
        ([], tmp_path / "file" / "run", f"run.out_dir={tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file"),
    ):
        code = main(["--config", str(ROOT / "configs" / "tiny.yaml"), *overrides(tiny_dir, toy, out, shared_cache),
                     *extra])
        err = capsys.readouterr().err
        assert code == 2 and message in err.strip().splitlines()[-1] and "Traceback" not in err, err
        assert not (tmp_path / "run").exists()


def test_partial_checkpoint_folders_are_removed(tmp_path):
    """What a kill during a checkpoint write leaves (a temporary folder) goes; complete checkpoints stay."""
    from eve.train import checkpoint

    (tmp_path / "ckpt-000004").mkdir()
    (tmp_path / "ckpt-000004" / "train_state.json").write_text("{}")
    (tmp_path / ".ckpt-000006.tmp-4242").mkdir()
    (tmp_path / ".ckpt-000006.tmp-4242" / "student_lora.safetensors").write_bytes(b"half")
    assert checkpoint.remove_partial(tmp_path) == [tmp_path / ".ckpt-000006.tmp-4242"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-000004"]
    assert checkpoint.checkpoints(tmp_path) == [tmp_path / "ckpt-000004"]


def test_preflight_names_bad_rows_before_any_weight_loads(tiny_dir, toy, shared_cache, tmp_path, capsys, monkeypatch):
    """A damaged clip and one shorter than its training clip are found by decoding every row's video before any
    weight loads: listed, one line, exit 2, no run folder; the counts are cached by file, so a re-run decodes
    nothing; data.bad_rows=skip trains on the other rows."""
    import pandas as pd

    from eve.data import preflight
    from eve.data.manifest import read_manifest, write_table
    from eve.data.video import write_video
    from eve.models import EveModel
    from eve.train.cli import main
    from eve.train.loop import preflight as train_preflight
    from conftest import moving_square
    from test_data_prep import damage_payload

    good = read_manifest(toy)
    damaged = damage_payload(Path(good["video"][0]), tmp_path / "damaged.mp4")
    short = write_video(tmp_path / "short.mp4", moving_square(2, 16, 16), 8)  # the clip takes 1 + 3 x 2 = 7 frames
    rows = pd.concat([good, good.iloc[:1].assign(video=str(damaged)), good.iloc[:1].assign(video=str(short))])
    manifest = write_table(rows.reset_index(drop=True), tmp_path / "manifest.csv")

    def no_weights(*a, **k):
        raise AssertionError("weights loaded before the pre-flight")

    monkeypatch.setattr(EveModel, "from_config", no_weights)
    monkeypatch.setenv("EVE_CACHE", str(tmp_path / "cache"))  # this test's own: other tests count the toy clips too
    decoded = []
    real = preflight.count_frames
    monkeypatch.setattr(preflight, "count_frames", lambda v: decoded.append(v) or real(v))
    argv = ["--config", str(ROOT / "configs" / "tiny.yaml"), *overrides(tiny_dir, manifest, tmp_path / "run",
                                                                         shared_cache)]
    for _ in range(2):
        code = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and not any("Traceback" in line for line in err), err
        n = len(good)
        assert f"2 of {n + 2} rows of {manifest} cannot be used, first row {n} ({damaged}): cannot decode" in err[-1]
        assert any(f"row {n + 1} ({short}): has 2 frames; the clip takes 7" in line for line in err), err
        assert not (tmp_path / "run").exists()
    videos = len(set(rows["video"]))
    assert len(decoded) == videos + 1, "the second run found every count in the cache, the failure excepted"
    assert decoded[-1] == str(damaged), "failures are not cached: the cause may have been fixed"
    os.utime(short, ns=(0, 0))  # touched: counted again
    cfg = cfg_for(tiny_dir, manifest, tmp_path / "run", shared_cache, "data.bad_rows=skip")
    kept = train_preflight(cfg, read_manifest(manifest))
    assert kept["video"].tolist() == good["video"].tolist()
    assert sorted(decoded[videos + 1 :]) == sorted([str(damaged), str(short)])


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_newest_checkpoint(tmp_path, monkeypatch, capsys):
    import errno

    from eve.train import checkpoint
    from eve.utils.cli import run_cli

    lora = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(lora.parameters())
    lora(torch.ones(1, 2)).sum().backward()
    opt.step()

    def save(step):
        return checkpoint.save(tmp_path, step, write_lora=lambda d: (d / "student_lora.safetensors").write_bytes(b"x"),
                               disc_state={}, optimizers={"opt_g": opt}, rng={}, state={"cursor": {}}, keep_last=0)

    first = save(2)
    before = {p.name: p.read_bytes() for p in first.iterdir()}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    assert run_cli("train_fdd.py", lambda: save(4)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write checkpoint" in err[0] and "No space left on device" in err[0], err
    assert "(ckpt-000002) is intact" in err[0]
    assert checkpoint.checkpoints(tmp_path) == [first] and sorted(p.name for p in tmp_path.iterdir()) == [first.name]
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before

    def read_only():
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "metrics.jsonl"))

    assert run_cli("train_fdd.py", read_only) == 2
    assert capsys.readouterr().err.strip() == (f"train_fdd.py: error: Read-only file system: {tmp_path / 'metrics.jsonl'}"
                                               " (what was written before is kept; run again once it can be written)")
