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
