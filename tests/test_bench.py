"""The benchmarks still run (their numbers are for people, not asserted). Each through its script's own `main`, in
this process: a subprocess would spend about 10 s importing what the worker has imported already."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch, call_main):
    """bench/NAME.py's (or bench/world/NAME.py's) main(argv) -> (exit code, stdout, stderr)."""
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    monkeypatch.syspath_prepend(str(ROOT / "bench" / "world"))
    return lambda name, *argv: call_main(importlib.import_module(name).main, *argv)


def test_fdd_step_bench_prints_its_tables(bench):
    code, out, err = bench("fdd_step", "--ks", "1", "--repeats", "1")
    assert code == 0, err[-2000:]
    assert "| **whole step**" in out and "| 1 | yes |" in out


def test_edit_speed_bench_times_every_part(tiny_dir, tmp_path, bench):
    """On the tiny set: every method's row, parts that add up to the whole, the per-frame teacher with no windows."""
    import pandas as pd

    out = tmp_path / "speed.csv"
    code, stdout, err = bench("edit_speed", "--config", tiny_dir / "eve.yaml", "--frames", "8", "12", "--ks", "1",
                              "--pnp-steps", "2", "--teacher-steps", "2", "--out", out)
    assert code == 0, err[-2000:]
    df = pd.read_csv(out)
    assert len(df) == 6 and set(df.frames) == {8, 12}
    assert ((df["first frame"] + df["windows"] + df["decode"]) <= df["total"] + 1e-6).all()
    assert (df[df.method.str.startswith("per-frame")]["windows"] == 0).all()
    assert "| student (1 steps) | 8 |" in stdout
    code, _, err = bench("edit_speed", "--config", tmp_path / "x.yaml")
    assert code == 2 and "python -m eve.models.full" in err


def test_first_frame_bench_counts_every_guidance_branch(tmp_path, bench):
    """On the committed shapes teachers, a few held-out clips: the teacher row costs 3 network evaluations a step
    (text and image guidance, batched into one call but counted per branch), the cached edit none, and a cached
    ground-truth frame 0 reads as a perfect edit."""
    import pandas as pd

    code, out, err = bench("first_frame", "--clips", "7", "--steps", "2", "--seeds", "0", "--out", tmp_path)
    assert code == 0, err[-2000:]
    df = pd.read_csv(tmp_path / "results.csv").groupby("first frame").mean(numeric_only=True)
    assert df.loc["edit teacher, 2 steps", "f0 nfe"] == 6
    cached = df.loc["cached edit (ground truth's frame 0)"]
    assert cached["f0 nfe"] == 0 and cached["f0 success"] == 1.0
    assert "| edit teacher, 2 steps | 6 |" in out
