"""The one place that fits eve's thread pools to the cores this process may actually use (issue 15).

torch (OpenMP), OpenCV and onnxruntime (RapidOCR, data preparation) each default to a pool as large as the
machine, and OpenMP's idle workers spin. On shared cores (a container's quota, a CPU set, other jobs) the spinning
threads steal the time their siblings need: a tiny FDD step went 8-50x slower with other work on 2 cores.
So, unless the user chose otherwise:

* every pool gets `cores()` threads: the CPU affinity mask, capped by a cgroup CPU quota (v2 `cpu.max`, v1
  `cpu.cfs_quota_us`); `EVE_NUM_THREADS=N` sets N instead, `EVE_NUM_THREADS=off` leaves every library's default;
* idle OpenMP workers sleep (`OMP_WAIT_POLICY=PASSIVE`).

`import eve` sets the environment variables (they only count before torch and OpenCV load, and a user's own
values win; OpenCV reads OPENCV_FOR_THREADS_NUM) and fits a torch that was imported first; `ocr_options()` sizes
RapidOCR's onnxruntime sessions, which read no environment variable.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

ENV = "EVE_NUM_THREADS"
CGROUP = Path("/sys/fs/cgroup")


def cores(cgroup: Path = CGROUP, membership: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota (rounded up)."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota(cgroup, membership)
    return max(1, min(n, math.ceil(quota))) if quota else n


def _v2_limits(cgroup: Path, membership: Path) -> list[float]:
    """cgroup v2: the quota of this process's own cgroup (`0::/path` in /proc/self/cgroup) and of each ancestor."""
    try:
        rel = next(line[3:] for line in membership.read_text().splitlines() if line.startswith("0::"))
    except (OSError, StopIteration):
        rel = "/"
    folder, out = cgroup / rel.strip("/"), []
    while True:
        f = folder / "cpu.max"
        if f.is_file():
            q, period = f.read_text().split()[:2]
            if q != "max":
                out.append(int(q) / int(period))
        if folder == cgroup or cgroup not in folder.parents:
            return out
        folder = folder.parent


def cgroup_quota(cgroup: Path = CGROUP, membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time this process's cgroup may use (v2 `cpu.max` of its cgroup and every ancestor, the
    smallest; else v1 `cpu/cpu.cfs_quota_us`), None if unlimited."""
    try:
        if (cgroup / "cgroup.controllers").is_file() or (cgroup / "cpu.max").is_file():  # v2
            limits = _v2_limits(cgroup, membership)
            return min(limits) if limits else None
        q = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if q <= 0 else q / period
    except (OSError, ValueError):
        return None


def thread_count() -> int | None:
    """Threads per pool: EVE_NUM_THREADS (a positive count, or "off" = None: leave the libraries alone) or cores()."""
    raw = os.environ.get(ENV, "").strip()
    if raw.lower() == "off":
        return None
    if not raw:
        return cores()
    if not raw.isdigit() or int(raw) < 1:
        raise SystemExit(f"eve: error: {ENV}={raw!r} is not a positive thread count or 'off'")
    return int(raw)


def set_environment() -> None:
    """Before torch / OpenCV / MKL load: pool sizes and sleeping idle workers (user values win)."""
    n = thread_count()
    if n is None:
        return
    os.environ.setdefault("OPENCV_FOR_THREADS_NUM", str(n))
    blas = os.environ.setdefault("OMP_NUM_THREADS", str(n))  # torch takes the smaller of OMP's and MKL's counts, so a
    for var in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # user's own OMP_NUM_THREADS sets the BLAS pools too
        os.environ.setdefault(var, blas)
    # Idle workers sleep at once. Spinning is what turns two jobs on shared cores into a 50x slowdown; a short spin
    # (GOMP_SPINCOUNT=10000, tried) did not help, and sleeping costs some speed on an idle machine (bench/threads.py).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def fit_torch() -> None:
    """torch.set_num_threads for a torch that was imported before eve (then OMP_NUM_THREADS came too late); a
    user's own OMP_NUM_THREADS still wins."""
    n = thread_count()
    if n is None or "torch" not in sys.modules:
        return
    import torch

    omp = os.environ.get("OMP_NUM_THREADS", "")
    n = int(omp) if omp.isdigit() and int(omp) > 0 else n
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def ocr_options() -> dict:
    """RapidOCR parameters that size its onnxruntime sessions (its default is every core, spinning)."""
    n = thread_count()
    if n is None:
        return {}
    return {"EngineConfig.onnxruntime.intra_op_num_threads": n, "EngineConfig.onnxruntime.inter_op_num_threads": 1}
