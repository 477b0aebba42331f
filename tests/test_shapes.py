"""The shapes world: ground truth, parser, metrics, dataset, and a smoke run of teachers -> edit -> benchmark."""

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from eve.data.manifest import read_manifest
from eve.data.video import read_video
from eve.tasks import TASKS
from eve.worlds.shapes import world as W
from eve.worlds.shapes.data import items, held_out_items, write_fdd_dataset
from eve.worlds.shapes.evaluate import item_metrics
from eve.worlds.shapes.parser import matches, parse

ROOT = Path(__file__).resolve().parents[1]


def test_edits_keep_the_motion_and_change_what_they_say():
    rng = random.Random(0)
    overlaps = []
    for _ in range(30):
        src = W.source_scene(rng)
        for task in TASKS:
            instruction, tgt = W.edit(src, task, rng)
            assert instruction and W.caption(tgt) != W.caption(src)
            if task != "remove":
                for t in range(8):
                    assert tgt.objects[0].position(t) == src.objects[0].position(t), "same motion as the source"
            if task == "add":
                assert len(tgt.objects) == 2 and tgt.objects[1].vx == tgt.objects[1].vy == 0
                overlaps.append(W.overlap_frames(tgt.objects[0], tgt.objects[1], 8))
            if task == "remove":
                assert tgt.objects == () and torch.all(W.render(tgt, 3) == W.render(tgt, 0))
    assert max(overlaps) <= 4 and sum(overlaps) / len(overlaps) < 1, "added objects are placed clear of the motion"


def test_parser_reads_the_ground_truth():
    for it in held_out_items(70, all_tasks=False):
        video = W.render_video(it.target, 8)
        assert all(matches(parse(video[t]), it.target, t, added=it.added) for t in range(8)), (it.task, it.caption)


def test_stripes_tint_is_far_from_every_background():
    for c in W.COLOURS.values():
        for b in W.BACKGROUNDS.values():
            assert math.dist(W.stripe_colour(c), b) > 0.8


def test_metrics_oracle_and_unedited_source():
    for it in items(5, 7, all_tasks=True):
        src, tgt = W.render_video(it.source, 8), W.render_video(it.target, 8)
        perfect = item_metrics(tgt, it, src, tgt)
        assert perfect["success"] == 1 and perfect["temporal"] == 0
        assert perfect["combined"] == pytest.approx(1.0, abs=1e-6)
        if it.task != "remove":
            assert perfect["structure"] < 0.6
        unedited = item_metrics(src, it, src, tgt)
        assert unedited["success"] == 0, it.task
        assert unedited["combined"] < perfect["combined"]


def test_fdd_dataset_holds_only_source_clips(tmp_path):
    manifest = write_fdd_dataset(tmp_path, num_clips=3)
    m = read_manifest(manifest)
    assert len(m) == 21 and sorted(m["task"].unique()) == sorted(TASKS)
    sources = items(0, 3)
    for it, (_, row) in zip(sources, m.iterrows()):
        frames = read_video(row["video"]).frames
        torch.testing.assert_close(frames, W.render_video(it.source, 8), atol=1 / 127, rtol=0)
        assert row["caption"] == it.caption and row["instruction"] == it.instruction


def test_test_set_is_disjoint_from_training_data():
    train = {W.caption(it.source) + str(it.source.objects[0].position(0)) for it in items(0, 100)}
    test = {W.caption(it.source) + str(it.source.objects[0].position(0)) for it in held_out_items(140)}
    assert len(train & test) < 5, "scenes are continuous random draws; exact repeats are coincidences"


@pytest.fixture(scope="module")
def smoke_teachers(tmp_path_factory):
    from eve.worlds.shapes.teachers import train_teachers

    return train_teachers(tmp_path_factory.mktemp("teachers"), scale=0.002)


def test_teachers_train_and_load_through_the_real_paths(smoke_teachers, tmp_path):
    from eve.config import load_config
    from eve.editing.cli import main
    from eve.models import EveModel

    cfg = load_config(smoke_teachers)
    m = EveModel.from_config(cfg.model)
    assert m.task_conditioned and m.schedule.prediction_type == "v_prediction"
    assert m.schedule.alphas_cumprod[-1] == 0, "zero-terminal SNR"
    for name in ("sd", "controlnet", "motion_adapter", "dino"):
        assert (smoke_teachers.parent / "logs" / f"{name}.jsonl").is_file()
    clip = tmp_path / "clip"
    from eve.worlds.shapes.data import write_frames

    write_frames(clip, W.render_video(W.source_scene(random.Random(1)), 8))
    out = tmp_path / "edited.mp4"
    assert main(["--config", str(smoke_teachers), "--video", str(clip), "--instruction", "make it night",
                 "--task", "global", "--output", str(out)]) == 0
    assert read_video(out).frames.shape == (8, 3, 16, 16)


def test_shapes_bench_runs(smoke_teachers, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "shapes.py"), "--teachers", str(smoke_teachers.parent),
                        "--clips", "7", "--seeds", "0", "--many", "2", "--long-clips", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| edit teacher, per frame (2 steps)" in r.stdout and "24-frame clip" in r.stdout
    assert (tmp_path / "grid_add.gif").is_file() and (tmp_path / "results.csv").is_file()

    # a second run reusing every row computes nothing and prints the same tables
    again = subprocess.run([*r.args[:-2], "--out", str(tmp_path / "again"), "--reuse", str(tmp_path / "results.csv")],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert " done (" not in again.stderr and again.stderr.count("reused from") == 5, again.stderr[-2000:]
    assert again.stdout == r.stdout
    # a different seed is not in the file: it runs
    other = subprocess.run([*r.args[:-2], "--seeds", "1", "--long-clips", "0", "--out", str(tmp_path / "other"),
                            "--reuse", str(tmp_path / "results.csv")], capture_output=True, text=True, timeout=600)
    assert other.returncode == 0 and "reused from" not in other.stderr, other.stderr[-2000:]
    # a file that is not a results.csv is refused before anything loads
    for bad in (tmp_path / "tables.md", tmp_path / "missing.csv"):
        refused = subprocess.run([*r.args[:-2], "--reuse", str(bad)], capture_output=True, text=True, timeout=600)
        assert refused.returncode == 2 and "--reuse:" in refused.stderr and "Traceback" not in refused.stderr
