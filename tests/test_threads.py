"""eve/utils/threads.py: one place sizes torch's, OpenCV's and onnxruntime's pools to the cores this process may
use, idle OpenMP workers sleep, and the user's own settings win."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from eve.utils.threads import cgroup_quota, cores

ROOT = Path(__file__).resolve().parents[1]
PROBE = ("import eve, os, torch, cv2; from eve.utils.threads import ocr_options; "
         "print(torch.get_num_threads(), cv2.getNumThreads(), os.environ.get('OMP_WAIT_POLICY'), "
         "ocr_options().get('EngineConfig.onnxruntime.intra_op_num_threads'), os.environ.get('OMP_NUM_THREADS'))")


def probe(**env) -> list[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "MKL_", "OPENCV_", "EVE_NUM", "GOMP_"))}
    r = subprocess.run([sys.executable, "-c", PROBE], env=base | env, cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


def test_pools_follow_the_available_cores_and_the_override():
    n = str(cores())
    assert probe() == [n, n, "PASSIVE", n, n]
    assert probe(EVE_NUM_THREADS="1") == ["1", "1", "PASSIVE", "1", "1"]
    # a user's own variables win: torch follows OMP_NUM_THREADS, OpenCV and onnxruntime follow eve's count
    assert probe(EVE_NUM_THREADS="1", OMP_NUM_THREADS="2", OMP_WAIT_POLICY="ACTIVE") == ["2", "1", "ACTIVE", "1", "2"]
    assert probe(EVE_NUM_THREADS="off")[2:] == ["None", "None", "None"], "off sets nothing: every library's default"


def test_a_bad_override_is_one_line():
    r = subprocess.run([sys.executable, "-c", "import eve"], env={**os.environ, "EVE_NUM_THREADS": "many"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.strip() == "eve: error: EVE_NUM_THREADS='many' is not a positive thread " \
                                                     "count or 'off'"


def test_cgroup_quota_caps_the_cores(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "none") == 1.5 and cores(tmp_path) == min(2, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path, tmp_path / "none") is None and cores(tmp_path) == len(os.sched_getaffinity(0))
    nested = tmp_path / "nested"  # cgroup v2 without a namespace: the limit sits on this process's own cgroup
    (nested / "jobs" / "eve").mkdir(parents=True)
    (nested / "cgroup.controllers").write_text("cpu\n")
    (nested / "jobs" / "cpu.max").write_text("300000 100000\n")
    (nested / "jobs" / "eve" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "self_cgroup").write_text("0::/jobs/eve\n")
    assert cgroup_quota(nested, tmp_path / "self_cgroup") == 3.0, "an ancestor's limit counts"
    assert cgroup_quota(nested, tmp_path / "no_such_file") is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("50000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_quota(v1) == 0.5 and cores(v1) == 1


def test_large_buffers_are_mapped_unless_the_user_says_otherwise(monkeypatch):
    """eve/utils/memory.py: glibc's mmap threshold fixed at 1 MB (so freed frame buffers go back to the system);
    EVE_MMAP_THRESHOLD=off or the user's own MALLOC_MMAP_THRESHOLD_ leave malloc alone."""
    import platform

    from eve.utils.memory import bound_heap

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    assert bound_heap()
    monkeypatch.setenv("EVE_MMAP_THRESHOLD", "off")
    assert not bound_heap()
    monkeypatch.delenv("EVE_MMAP_THRESHOLD")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not bound_heap()
