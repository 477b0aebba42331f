"""The shapes world: ground truth, known motion, parser, metrics, split, dataset, and a smoke run of
teachers -> edit -> benchmark -> gates."""

import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from eve.data.manifest import read_manifest
from eve.data.video import read_video, to_uint8
from eve.errors import EveError
from eve.tasks import TASKS, predict_task
from eve.worlds.shapes import nets
from eve.worlds.shapes.captioner import Writer
from eve.worlds.shapes import world as W
from eve.worlds.shapes.data import draw, held_out, held_out_items, items, write_fdd_dataset
from eve.worlds.shapes.measure import (PATTERN_STD, clip_metrics, edit_regions, fine_detail, frame_success,
                                      pattern_std, patterned_regions, region, structure_change)

ROOT = Path(__file__).resolve().parents[1]


def test_edits_keep_the_motion_and_change_what_they_say():
    rng = random.Random(0)
    for _ in range(30):
        src = W.source_scene(rng)
        for task in TASKS:
            instruction, tgt = W.edit(src, task, rng)
            assert instruction and W.caption(tgt) != W.caption(src)
            assert tgt.pan == src.pan
            kept = [o for o in src.objects if o in tgt.objects]
            assert len(kept) >= len(src.objects) - 1, "an edit changes one object at most"
            if task == "add":
                assert len(tgt.objects) == len(src.objects) + 1 and tgt.objects[-1].vx == tgt.objects[-1].vy == 0


def test_one_to_many_edits_draw_a_new_pattern_each_time():
    rng = random.Random(1)
    src = W.source_scene(rng)
    for task in ("texture", "background", "style", "global"):
        targets = [W.without_grain(W.edit(src, task, rng)[1]) for _ in range(5)]  # the patterns alone
        frames = torch.stack([W.render(t, 0) for t in targets])
        changed = (frames - W.render(W.without_grain(src), 0)).abs().amax(dim=(0, 1)) > 0.1
        assert (frames[1:] - frames[:1]).abs().mean(1)[:, changed].mean() > 0.2, task


def test_known_motion_warps_the_ground_truth_exactly():
    """Every pixel the motion model calls valid is the same surface point one frame later: warp error 0."""
    for it in items(3, 10, all_tasks=True):
        video = W.render_video(it.target)
        assert W.warp_error(video, it.target) < 1e-6, it.task
        # and the measure can fail: an edit drawn afresh in every frame (its grain, and its pattern where it has
        # one) is not warp-consistent where it was edited, which, as every edit redraws the grain, is everywhere
        rng = random.Random(it.clip)
        redrawn = torch.stack([W.render(W.edit(it.source, it.task, rng)[1], t) for t in range(W.NUM_FRAMES)])
        assert W.warp_error(redrawn, it.target, edit_regions(redrawn, it.source, it.target)) > 0.05, it.task


def test_warp_is_consistent_with_the_motion_it_models():
    sc = W.source_scene(random.Random(5))
    xc, yc, valid = W.previous_pixel(sc, 3)
    assert valid.float().mean() > 0.7, "most pixels stay visible from frame to frame"
    prev, now = W.render(sc, 2), W.render(sc, 3)
    torch.testing.assert_close(prev[:, yc, xc][:, valid], now[:, valid])


def readable_frames(it) -> list[int]:
    """Frames where the edit shows (>= 12 pixels changed, grain aside: every edit redraws it) and, for a pattern
    edit, the target reads as patterned somewhere (a small surface can show a dotted or checked pattern without its
    second ink)."""
    return [t for t in range(W.NUM_FRAMES) if (structure_change(it.source, it.target, t) > 0.1).sum() >= 12
            and (it.task in ("add", "remove", "local") or patterned_regions(it.task, it.source, it.target, t))]


def test_parser_reads_the_ground_truth_and_rejects_the_source():
    for it in held_out_items(70):
        tgt, src = W.render_video(it.target), W.render_video(it.source)
        assert all(frame_success(tgt[t], t, it.task, it.source, it.target, it.added) for t in range(W.NUM_FRAMES)), (
            it.task, it.instruction)
        visible = readable_frames(it)
        assert visible and not any(frame_success(src[t], t, it.task, it.source, it.target, it.added) for t in visible), (
            it.task, it.instruction)


def test_every_edit_redraws_the_grain_and_the_parser_reads_the_edit_not_the_grain():
    """Grain moves with its surface (the exact warp above) and every edit draws it afresh; the parser ignores it:
    the target under other grain reads as the edit, the source under other grain does not, and no grained plain
    surface reads as patterned."""
    rng = random.Random(0)
    for it in held_out_items(70):
        assert it.source.grain is not None and it.target.grain not in (None, it.source.grain)
        tgt = W.render_video(replace(it.target, grain=rng.getrandbits(30)))
        src = W.render_video(replace(it.source, grain=rng.getrandbits(30)))
        assert all(frame_success(tgt[t], t, it.task, it.source, it.target, it.added) for t in range(W.NUM_FRAMES))
        assert not any(frame_success(src[t], t, it.task, it.source, it.target, it.added) for t in readable_frames(it))
        for layer in range(len(it.source.objects) + 1):
            assert pattern_std(src[0], region(it.source, 0, layer)) < PATTERN_STD


def test_fine_detail_reads_the_grain_where_no_pattern_covers_the_frame():
    """Held-out frames: where no pattern covers most of the frame, grain raises the reading against the
    same frame without it by at least half (twice, in most); a brightness shift leaves it as it is."""
    its = held_out_items(70)
    grained = torch.stack([W.render(it.target, 3) for it in its])
    plain = torch.stack([W.render(W.without_grain(it.target), 3) for it in its])
    d = fine_detail(grained)
    open_frames = torch.tensor([it.target.style == "plain" and it.target.bg_pattern is None for it in its])
    assert int(open_frames.sum()) >= 30
    assert bool((d - fine_detail(plain))[open_frames].min() > math.log(1.5))
    assert float((d - fine_detail(plain))[open_frames].median()) > math.log(2)
    assert torch.allclose(fine_detail(grained + 0.05), d, atol=1e-3)
    assert torch.equal(fine_detail(grained.view(7, 10, 3, W.SIZE, W.SIZE)), d.view(7, 10))


def test_grain_scale_scales_the_grain_and_nothing_else():
    """render's grain_scale (the critic-ceiling bench's fakes): 0 is the grainless frame, 1 the world's, and in
    between the frame moves linearly from one to the other wherever neither is clamped (palette and stars are
    affine in the frame)."""
    its = held_out_items(14, all_tasks=False)
    for it in its:
        full, none, half = (W.render(it.target, 2, grain_scale=g) for g in (1.0, 0.0, 0.5))
        assert torch.equal(full, W.render(it.target, 2)) and torch.equal(none, W.render(W.without_grain(it.target), 2))
        free = (full.abs() < 1) & (none.abs() < 1)
        assert free.float().mean() > 0.5 and not torch.equal(full, none)
        assert torch.allclose(half[free], ((full + none) / 2)[free], atol=1e-5)
    last = its[-1].target
    assert torch.equal(W.render_video(last, 3, grain_scale=0.0)[1], W.render(last, 1, grain_scale=0.0))


def test_parser_does_not_take_a_recolour_for_an_addition():
    """"add a red circle" answered by turning an existing object red has the colour but adds nothing."""
    caught = 0
    for it in [it for it in held_out_items(140) if it.task == "add"]:
        recoloured = replace(it.source, objects=(replace(it.source.objects[0], colour=it.added),)
                             + it.source.objects[1:])
        frames = [t for t in range(W.NUM_FRAMES) if int(region(it.source, t, 1).sum()) >= 4]
        caught += all(not frame_success(W.render(recoloured, t), t, "add", it.source, it.target, it.added)
                      for t in frames)
    assert caught == len([it for it in held_out_items(140) if it.task == "add"])


def test_unreadable_frames_are_rare():
    """The parser excuses a pattern edit's frame only where the target shows no readable pattern: that must stay
    the exception, or the excuse would hide a parser that reads nothing."""
    frames = unread = 0
    for it in held_out_items(140):
        if it.task in W.ONE_TO_MANY and it.task != "add":
            frames += W.NUM_FRAMES
            unread += W.NUM_FRAMES - len(readable_frames(it))
    assert unread / frames < 0.05, unread / frames


def test_metrics_oracle_unedited_and_flickering_edits():
    for it in items(5, 7, all_tasks=True):
        tgt, src = W.render_video(it.target), W.render_video(it.source)
        perfect = clip_metrics(tgt, it.task, it.source, it.target, it.added)
        assert perfect["success"] == 1 and perfect["warp"] < 1e-6
        assert perfect["combined"] == pytest.approx(1.0, abs=1e-6)
        unedited = clip_metrics(src, it.task, it.source, it.target, it.added)
        unread = W.NUM_FRAMES - len(readable_frames(it))
        assert unedited["success"] <= unread / W.NUM_FRAMES and unedited["combined"] < perfect["combined"], it.task
        if it.task in W.ONE_TO_MANY and it.task != "add":
            assert perfect["contrast"] == pytest.approx(1.0)
            mush = tgt * 0.5 + W.render_video(it.source) * 0.5  # averaged modes: half the pattern contrast
            assert clip_metrics(mush, it.task, it.source, it.target)["contrast"] < 0.6


def test_test_set_is_held_out_from_every_training_stream():
    """No teacher and no FDD run sees a test clip: training streams reject held-out scenes, and no test frame
    (as 8-bit pixels) appears among the frames those streams produce."""
    test = held_out_items(140)
    assert all(held_out(it.source) for it in test)
    digest = lambda f: hashlib.sha1(to_uint8(f[None])[0].tobytes()).hexdigest()  # noqa: E731
    test_frames = {digest(f) for it in test for f in W.render_video(it.source)}
    test_frames |= {digest(f) for it in test for f in W.render_video(it.target)}
    rng = random.Random(0)
    for make in (W.source_scene, W.backbone_scene):
        for _ in range(300):
            sc = draw(make, rng)
            assert not held_out(sc)
            assert not any(digest(f) in test_frames for f in W.render_video(sc))
    for it in items(0, 40):  # FDD's data
        assert not held_out(it.source)
    assert sum(held_out(W.source_scene(rng)) for _ in range(2000)) in range(60, 200), "about 1 in 16 is held out"


def test_writer_turns_each_instruction_into_the_target_caption():
    """The world's instruction writer (what instruction-only editing asks) agrees with `world.edit` on every task,
    printed negatives and night included, and the task the rules in eve.tasks guess is the one it names."""
    for it in items(3, 20, all_tasks=True):
        reply = json.loads(Writer().edit(it.input_caption, it.instruction, 0))
        assert (reply["task"], reply["output_caption"]) == (it.task, it.caption), it.instruction
        assert predict_task(it.instruction).task == it.task, it.instruction


def test_fdd_dataset_holds_only_source_clips(tmp_path):
    manifest = write_fdd_dataset(tmp_path, num_clips=3)
    m = read_manifest(manifest)
    assert len(m) == 21 and sorted(m["task"].unique()) == sorted(TASKS)
    sources = items(0, 3)
    for it, (_, row) in zip(sources, m.iterrows()):
        frames = read_video(row["video"]).frames
        torch.testing.assert_close(frames, W.render_video(it.source), atol=1 / 127, rtol=0)
        assert row["caption"] == it.caption and row["instruction"] == it.instruction


def test_pattern_objects_occlude_in_draw_order():
    a = W.Obj("square", "red", 12, 4, 4)
    b = W.Obj("square", "blue", 12, 8, 8, pattern=W.Pattern("striped", 5.0, 0.3, (0.1, 0.2)))
    lay = W.layers(W.Scene("grey", (a, b)), 0)
    assert lay[10, 10] == 2 and lay[5, 5] == 1 and lay[30, 30] == 0
    assert W.render(W.Scene("grey", (a, replace(b, pattern=None))), 0)[:, 10, 10].tolist() == pytest.approx(
        list(W.COLOURS["blue"]))


@pytest.fixture(scope="session")
def smoke_teachers(tmp_path_factory):
    """Trained once per test session, not once per xdist worker: the first worker builds them under a lock in the
    folder all workers share, the others read them (no test writes into them)."""
    from filelock import FileLock

    from eve.worlds.shapes.teachers import train_teachers

    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else \
        tmp_path_factory.getbasetemp()
    with FileLock(str(shared / "smoke-teachers.lock")):
        if not (shared / "smoke-teachers" / "eve.yaml").is_file():
            train_teachers(shared / "smoke-teachers", scale=0.002)
    return shared / "smoke-teachers" / "eve.yaml"


def overrides(teachers: Path) -> list[str]:
    root = teachers.parent
    return [f"model.pretrained={root / 'sd'}", f"model.controlnet={root / 'controlnet'}",
            f"model.motion_adapter={root / 'motion_adapter'}", f"model.sparsectrl={root / 'sparsectrl'}",
            f"model.dino={root / 'dino'}"]


def test_committed_teachers_are_what_nets_builds():
    """The committed weights were trained from nets.py's architecture: a change there without retraining fails here."""
    import json

    teachers = ROOT / "data" / "shapes" / "teachers"
    cfg = lambda *p: json.loads(teachers.joinpath(*p, "config.json").read_text())  # noqa: E731
    vae, unet, cn = cfg("sd", "vae"), cfg("sd", "unet"), cfg("controlnet")
    assert (vae["block_out_channels"], vae["latent_channels"]) == (list(nets.VAE_BLOCKS), nets.LATENT_CHANNELS)
    assert (unet["block_out_channels"], unet["in_channels"], unet["sample_size"]) == (
        list(nets.BLOCKS), nets.LATENT_CHANNELS, nets.LATENT_SIZE)
    assert cn["conditioning_embedding_out_channels"] == list(nets.HINT_CHANNELS)
    assert cfg("motion_adapter")["block_out_channels"] == list(nets.BLOCKS)


def test_teachers_train_and_load_through_the_real_paths(smoke_teachers, tmp_path):
    from eve.config import load_config
    from eve.editing.cli import main
    from eve.models import EveModel
    from eve.models.codec import VaeCodec
    from eve.worlds.shapes.data import write_frames

    cfg = load_config(smoke_teachers)
    m = EveModel.from_config(cfg.model)
    assert m.task_conditioned and m.schedule.prediction_type == "v_prediction"
    assert m.schedule.alphas_cumprod[-1] == 0, "zero-terminal SNR"
    assert isinstance(m.codec, VaeCodec) and m.codec.scale_factor == 2 and m.sparsectrl is not None
    for name in ("sd_vae", "sd_unet", "controlnet", "motion_adapter", "dino"):
        assert (smoke_teachers.parent / "logs" / f"{name}.jsonl").is_file()
    clip = write_frames(tmp_path / "clip", W.render_video(W.source_scene(random.Random(1))))
    out = tmp_path / "edited.mp4"
    assert main(["--config", str(smoke_teachers), "--video", str(clip), "--instruction", "make it night",
                 "--task", "global", "--output", str(out)]) == 0
    assert read_video(out).frames.shape == (8, 3, W.SIZE, W.SIZE)


def test_a_stage_continues_from_earlier_teachers(smoke_teachers, tmp_path):
    """--init: the edit adapter starts from the earlier weights (not random ones) and its log goes on counting."""
    import json

    from safetensors.torch import load_file

    from eve.worlds.shapes.teachers import train_teachers

    earlier = smoke_teachers.parent
    train_teachers(tmp_path, init=earlier, only="controlnet", steps=2)  # takes the earlier backbone with it
    assert (tmp_path / "sd" / "unet").is_dir()
    old, new = (load_file(str(r / "controlnet" / "diffusion_pytorch_model.safetensors")) for r in (earlier, tmp_path))
    # EMA (decay 0.999) of two warm-up steps: the weights move by a hair from the earlier ones, never to new random ones
    assert max(float((old[k].float() - new[k].float()).abs().max()) for k in old) < 1e-3
    steps = [json.loads(line)["step"] for line in (tmp_path / "logs" / "controlnet.jsonl").read_text().splitlines()]
    earlier_steps = [json.loads(line)["step"] for line in (earlier / "logs" / "controlnet.jsonl").read_text().splitlines()]
    assert steps[: len(earlier_steps)] == earlier_steps and steps[len(earlier_steps):] == [max(earlier_steps) + 1,
                                                                                           max(earlier_steps) + 2]
    with pytest.raises(ValueError, match="only="):
        train_teachers(tmp_path, steps=2)


def test_an_epsilon_backbone_and_the_adapter_that_follows_it(smoke_teachers, tmp_path, monkeypatch):
    """--prediction epsilon: the backbone continued alone takes the earlier autoencoder along, saves SD-1.5's
    schedule (epsilon, terminal SNR not zero), and an adapter trained next reads that schedule, not the default."""
    from eve.worlds.shapes import teachers as T

    earlier = smoke_teachers.parent
    T.train_teachers(tmp_path, init=earlier, only="backbone", steps=2, prediction="epsilon")
    assert (tmp_path / "sd" / "vae").is_dir() and (tmp_path / "logs" / "sd_vae.jsonl").is_file()
    s = T.backbone_schedule(tmp_path)
    assert s.prediction_type == "epsilon" and float(s.alphas_cumprod[-1]) > 0
    assert T.backbone_schedule(earlier).prediction_type == "v_prediction"
    seen = []
    real = T.backbone_schedule
    monkeypatch.setattr(T, "backbone_schedule", lambda root: seen.append(real(root).prediction_type) or real(root))
    T.train_teachers(tmp_path, init=earlier, only="controlnet", steps=2)
    T.train_teachers(tmp_path, init=earlier, only="video", steps=2)
    assert seen == ["epsilon", "epsilon"]
    assert T.backbone_schedule(tmp_path).prediction_type == "epsilon", "the adapters' runs kept the backbone"
    with pytest.raises(EveError, match="trained with epsilon"):  # a backbone there already: no silent v_prediction
        T.train_teachers(tmp_path, only="controlnet", steps=2, prediction="v_prediction")
    with pytest.raises(ValueError, match="prediction='x'"):
        T.train_teachers(tmp_path, prediction="x")
    with pytest.raises(ValueError, match="only='unet'"):
        T.train_teachers(tmp_path, only="unet", steps=2)


def test_gates_bench_runs_and_reports_every_gate(smoke_teachers, tmp_path, call_main, monkeypatch):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "world" / "gates.py"), "--clips", "7", "--k", "1", "--many", "2",
                        "--probe-batches", "3", "--probe-epochs", "2", "--pnp-guidance", "1", "1",
                        "--out", str(tmp_path),
                        *overrides(smoke_teachers),
                        "run.micro_batch=2"], capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 1), r.stderr[-2000:]  # 1: a gate failed (random-ish smoke teachers fail them)
    for gate in ("1. misalignment", "2. few-step failure, edit teacher", "2. few-step failure, video teacher",
                 "3. a critic can see it"):
        assert gate in r.stdout
    assert (tmp_path / "gates.md").read_text().count("PASS") + (tmp_path / "gates.md").read_text().count("FAIL") == 4
    assert re.search(r"control, the same heads on raw pixel patches: D_e \d\.\d{3}", r.stdout)
    assert re.search(r"detail control .*: D_e \d\.\d{3}, D_v \d\.\d{3}; blur control .*: D_e \d\.\d{3}", r.stdout)
    assert (tmp_path / "grid_texture.png").is_file()
    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))  # the refusal in this process: no 10 s of imports for one line
    from gates import main

    code, _, err = call_main(main, "--k", "5", "--many", "2")
    assert code == 2 and "--k" in err.strip().splitlines()[-1]


def test_critic_ceiling_bench_sees_chance_on_identical_frames_and_refuses_another_manifest(call_main, monkeypatch):
    """bench/world/critic_ceiling.py on the committed teachers and data: at keep 1 the fakes are the reals, so every critic
    is at exactly 0.500 and never ranks a real above its fake; at keep 0 the hand-made detail control tells the
    grained frames from the grainless ones; the early columns are the probe's own log at that epoch; no teacher
    samples anything (make_batch's need_f1=False). A manifest the world did not write with --data-seed, or a bad
    --keep, is refused in one line before any weight loads."""
    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    import disc_probe
    from critic_ceiling import main

    monkeypatch.setattr(disc_probe, "EPOCHS", 1)  # gate 3's epochs, read as the early columns' epoch

    def no_teacher(*_, **__):
        raise AssertionError("a teacher sampled: the ceiling's batches need only frames and texts")

    monkeypatch.setattr("eve.train.loop.compute_samples", no_teacher)
    code, out, err = call_main(main, "--keep", "1", "0", "--batches", "3", "--held-out", "1", "--epochs", "2",
                               "--", "run.micro_batch=2")
    assert code == 0, err[-2000:]
    assert "| keep | critic | D_e @1 | D_v @1 | D_e @2 | D_v @2 | paired D_e | train D_e |" in out
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines()
            if line.startswith(("| 1.0 |", "| 0.0 |"))]
    critics = ("detail (no learning)", "heads on the features", "heads on pixel patches")
    assert [r[:2] for r in rows] == [[k, c] for k in ("1.0", "0.0") for c in critics]
    assert rows[0][2:] == ["0.500", "0.500", "", "", "0.000", ""]
    for r in rows[1:3]:
        assert r[2:] == ["0.500"] * 4 + ["0.000", "0.500"], r
    assert float(rows[3][2]) > 0.5  # keep 0: the detail control's held-out D_e, grain against none
    logged = [line.split("|")[1:-1] for line in err.splitlines() if line.startswith("| 1 |")]  # epoch 1, per probe
    assert [[f"{float(c):.3f}" for c in (row[6], row[8])] for row in logged[2:]] == [r[2:4] for r in rows[4:]]

    def no_weights(*_, **__):
        raise AssertionError("weights loaded before the refusal")

    monkeypatch.setattr("eve.train.loop.build_parts", no_weights)
    code, _, err = call_main(main, "--data-seed", "1")
    assert code == 2 and err.count("\n") == 1 and "manifest.csv was not written by" in err and "--seed 1" in err
    code, _, err = call_main(main, "--keep", "1.5")
    assert code == 2 and "--keep fractions must be in [0, 1]" in err.strip().splitlines()[-1]


def test_shapes_bench_runs(smoke_teachers, tmp_path, call_main, monkeypatch):
    args = ["--teachers", str(smoke_teachers.parent), "--clips", "7", "--seeds", "0", "--k", "1", "--many", "2",
            "--long-clips", "2", "--pnp-guidance", "1", "1"]
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "world" / "shapes.py"), *args, "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| edit teacher, per frame (2 steps)" in r.stdout and "24-frame clip" in r.stdout
    assert "plug-and-play, oracle f1 (1 steps, guidance 1/1)" in r.stdout
    assert "| nfe |" in r.stdout.replace("nfe | sec", "nfe |")
    scored = pd.read_csv(tmp_path / "results.csv")
    assert (scored.method == "plug-and-play (1 steps, guidance 1/1)").sum() == 7, "best = 1/1: the row once"
    assert (tmp_path / "grid_add.gif").is_file() and (tmp_path / "results.csv").is_file()

    # the same entry point in this process from here on (a subprocess start-up costs about 10 s of imports)
    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    from shapes import main

    # a second run reusing every row computes nothing and prints the same tables
    code, out, err = call_main(main, *args, "--out", tmp_path / "again", "--reuse", tmp_path / "results.csv")
    assert code == 0 and " done (" not in err and "reused" in err, err[-2000:]
    assert out == r.stdout
    # rows computed apart (--only) and put together (several --reuse files) give the same tables
    code, _, err = call_main(main, *args, "--out", tmp_path / "part", "--only", "video teacher", "--long-clips", "0")
    assert code == 0 and err.count(" done (") == 1 and "video teacher" in err, err[-2000:]
    part = pd.read_csv(tmp_path / "part" / "results.csv")
    rest = pd.read_csv(tmp_path / "results.csv")
    rest[~rest.method.str.startswith("video teacher")].to_csv(tmp_path / "rest.csv", index=False)
    code, out, err = call_main(main, *args, "--out", tmp_path / "merged", "--reuse", tmp_path / "rest.csv",
                               tmp_path / "part" / "results.csv")
    assert code == 0 and " done (" not in err, err[-2000:]
    assert len(part) == 7

    def scores(path):  # every item's scores, the seconds aside
        return pd.read_csv(path).drop(columns="sec_per_clip").sort_values(["method", "clip"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(scores(tmp_path / "merged" / "results.csv"), scores(tmp_path / "results.csv"))
    # a file that is not a results.csv, or a checkpoint that does not exist, is refused before anything loads
    for extra, said in ((["--reuse", str(tmp_path / "tables.md")], "--reuse: "),
                        (["--student", str(tmp_path / "nope")], "nope does not exist")):
        code, _, err = call_main(main, *args, *extra)
        assert code == 2 and said in err.strip().splitlines()[-1] and "writing to" not in err, err


def test_free_latent_probe_moves_latents_only_along_a_gradient(smoke_teachers, tmp_path, call_main, monkeypatch):
    """bench/world/sds_probe.py: an objective with no gradient (lam 0: Adam's step is then exactly zero) leaves every
    metric at its start; SDS moves them; a bad objective is one line before any weight loads."""
    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    import sds_probe

    args = ["--config", str(smoke_teachers), "--clips", "2", "--steps", "2", "--eval-every", "1"]
    code, out, err = call_main(sds_probe.main, *args, "--objective", "still=fdd.lam=0", "--objective",
                               "moved=fdd.score=sds", "--out", tmp_path)
    assert code == 0, err[-2000:]
    df = pd.read_csv(tmp_path / "results.csv")
    cols = ["success", "contrast", "warp", "combined", "detail"]
    still, moved = df[df.objective == "still"], df[df.objective == "moved"]
    assert list(still.step) == list(moved.step) == [0, 1, 2]
    assert (still[cols].nunique(dropna=False) == 1).all(), still
    assert moved[cols].iloc[0].equals(still[cols].iloc[0]), "every objective starts from the same latents"
    assert moved.detail.iloc[-1] != moved.detail.iloc[0]
    assert "| still | 0 |" in out and (tmp_path / "grid.png").is_file()
    monkeypatch.setattr(sds_probe, "build_parts", lambda *a, **k: pytest.fail("weights loaded before the check"))
    code, _, err = call_main(sds_probe.main, *args, "--objective", "no overrides here")
    assert code == 2 and "must look like NAME=key=value" in err.strip().splitlines()[-1]


def test_guidance_sweep_uses_validation_clips_and_picks_the_best(smoke_teachers):
    from eve.config import load_config
    from eve.models import EveModel
    from eve.worlds.shapes.evaluate import GUIDANCE_GRID, VALIDATION_SEED, Evaluator, Method, best_guidance

    assert not any(held_out(it.source) for it in items(VALIDATION_SEED, 7, all_tasks=False))
    ev = Evaluator(EveModel.from_config(load_config(smoke_teachers).model), teacher_steps=2, teacher_guidance=2.0,
                   teacher_image_guidance=1.5, batch=7)
    lines = []
    best = best_guidance(ev, Method("pnp", "clip", 1, first="oracle"), clips=7, log=lines.append)
    scores = {g: float(line.rsplit("combined ", 1)[1].split()[0]) for g, line in zip(GUIDANCE_GRID, lines)}
    assert len(scores) == len(GUIDANCE_GRID) and scores[best] == max(scores.values())
