"""The benchmarks still run (their numbers are for people, not asserted)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_fdd_step_bench_prints_its_tables():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "fdd_step.py"), "--ks", "1", "--repeats", "1"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| **whole step**" in r.stdout and "| 1 | yes |" in r.stdout


def test_edit_speed_bench_times_every_part(tiny_dir, tmp_path):
    """On the tiny set: every method's row, parts that add up to the whole, the per-frame teacher with no windows."""
    import pandas as pd

    out = tmp_path / "speed.csv"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "edit_speed.py"), "--config", str(tiny_dir / "eve.yaml"),
                        "--frames", "8", "12", "--ks", "1", "--pnp-steps", "2", "--teacher-steps", "2", "--out",
                        str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(out)
    assert len(df) == 6 and set(df.frames) == {8, 12}
    assert ((df["first frame"] + df["windows"] + df["decode"]) <= df["total"] + 1e-6).all()
    assert (df[df.method.str.startswith("per-frame")]["windows"] == 0).all()
    assert "| student (1 steps) | 8 |" in r.stdout
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "edit_speed.py"), "--config", str(tmp_path / "x.yaml")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "python -m eve.models.full" in r.stderr


def test_first_frame_bench_counts_every_guidance_branch(tmp_path):
    """On the committed shapes teachers, a few held-out clips: the teacher row costs 3 network evaluations a step
    (text and image guidance, batched into one call but counted per branch), the cached edit none, and a cached
    ground-truth frame 0 reads as a perfect edit."""
    import pandas as pd

    r = subprocess.run([sys.executable, str(ROOT / "bench" / "first_frame.py"), "--clips", "7", "--steps", "2",
                        "--seeds", "0", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(tmp_path / "results.csv").groupby("first frame").mean(numeric_only=True)
    assert df.loc["edit teacher, 2 steps", "f0 nfe"] == 6
    cached = df.loc["cached edit (ground truth's frame 0)"]
    assert cached["f0 nfe"] == 0 and cached["f0 success"] == 1.0
    assert "| edit teacher, 2 steps | 6 |" in r.stdout
