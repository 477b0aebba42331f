"""How much do two jobs on the same cores slow each other, before and after eve fits its threads to the machine
(issue 15; eve/utils/threads.py)?

    python bench/threads.py [--steps 5] [--suite tests/test_sampling.py tests/test_losses.py] [--timeout 300] \
        [--out bench/out/threads]

Two policies: "before" runs every process with EVE_NUM_THREADS=off (each library's own default: pools as large as
the machine, idle OpenMP workers spinning); "after" with eve's default (pools of `cores()` threads, idle workers
asleep). Under each policy it measures, idle and beside a competing load, (1) a tiny FDD run: `train_fdd.py` on
the tiny random-weight set, the median of its logged `step_time` over steps 2..N and the process's CPU seconds,
and (2) a slice of the test suite (wall seconds). The competing load is another tiny FDD run of the same policy
(the usual case: a second eve job, or a helper running the tests, on the same cores). The ratio loaded / idle is
the slowdown; the table and results.csv go under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

POLICIES = {"before": {"EVE_NUM_THREADS": "off"}, "after": {}}


def env_for(policy: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("EVE_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
                        "OPENBLAS_NUM_THREADS", "OPENCV_FOR_THREADS_NUM", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    return env | {"HF_HUB_OFFLINE": "1"} | POLICIES[policy]


def fdd_command(overrides: list[str], out: Path, steps: int) -> list[str]:
    return [sys.executable, str(ROOT / "train_fdd.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), *overrides,
            f"run.out_dir={out}", f"run.steps={steps}", f"run.save_every={steps}", "run.sample_every=0",
            "run.resume=never", f"fdd.cache_dir={out.parent / 'cache'}"]


def children_cpu() -> float:
    """CPU seconds of the reaped children so far (the competing load is reaped only after a measurement)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def fdd_run(overrides, out: Path, steps: int, policy: str, timeout: int) -> dict:
    """Median step seconds (steps 2..N) and CPU seconds of one tiny FDD run. Past the timeout the run is stopped
    and the step time is its wall time over the steps begun (start-up included: a rough figure)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    log = open(out.parent / "stderr.txt", "w")
    proc = subprocess.Popen(fdd_command(overrides, out, steps), env=env_for(policy), stdout=subprocess.DEVNULL,
                            stderr=log, start_new_session=True)
    t0, cpu0 = time.perf_counter(), children_cpu()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode > 0:  # it failed by itself (a kill is negative): nothing to time
        raise SystemExit(f"threads.py: the tiny FDD run failed under policy {policy}:\n"
                         + (out.parent / "stderr.txt").read_text()[-2000:])
    metrics = out / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    if proc.returncode == 0:
        return {"step_s": statistics.median(r["step_time"] for r in rows[1:]), "cpu_s": cpu, "note": ""}
    # at most len(rows) + 1 steps began in the wall time; start-up is counted in, so this is only a rough figure
    return {"step_s": wall / (len(rows) + 1), "cpu_s": cpu,
            "note": f"stopped after {wall:.0f} s with {len(rows)} of {steps} steps done (step time: wall time over "
                    "the steps begun, start-up included)"}


def suite_run(tests: list[str], policy: str, timeout: int) -> dict:
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                           env=env_for(policy), timeout=timeout, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"suite_s": float("nan"), "suite_note": f"the suite slice did not finish in {timeout} s"}
    if r.returncode:
        raise SystemExit(f"threads.py: the suite slice failed under policy {policy}:\n{r.stdout[-2000:]}")
    return {"suite_s": time.perf_counter() - t0}


class Load:
    """A competing tiny FDD run of the same policy, running until stopped."""

    def __init__(self, overrides, folder: Path, policy: str, timeout: int):
        folder.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(fdd_command(overrides, folder / "run", 100000), env=env_for(policy),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while not (folder / "run" / "metrics.jsonl").is_file():  # loaded and stepping
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit("threads.py: the competing load did not start")
            time.sleep(0.5)

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=5, help="tiny FDD steps per measurement (>= 3)")
    ap.add_argument("--suite", nargs="*", default=["tests/test_sampling.py", "tests/test_losses.py"],
                    help="test files timed as the suite slice (none: skip)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds one measurement may take (then: a bound)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "threads"))
    args = ap.parse_args(argv)
    if args.steps < 3 or args.timeout < 1:
        ap.error(f"need --steps >= 3 and --timeout >= 1, got {args.steps}, {args.timeout}")
    missing = [t for t in args.suite if not (ROOT / t).exists()]
    if missing:
        ap.error(f"--suite: no such test file(s): {', '.join(missing)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing to {out}", file=sys.stderr)

    from fdd_step import tiny_overrides  # bench/ is on sys.path as this script's folder

    from eve.utils.threads import cores

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        overrides = [o for o in tiny_overrides(tmp) if not o.startswith("run.out_dir=")]
        for policy in POLICIES:
            for load in ("idle", "loaded"):
                competitor = Load(overrides, tmp / f"load-{policy}", policy, args.timeout) if load == "loaded" else None
                try:
                    row = {"policy": policy, "load": load}
                    row |= fdd_run(overrides, tmp / f"{policy}-{load}" / "run", args.steps, policy, args.timeout)
                    if args.suite:
                        row |= suite_run(args.suite, policy, args.timeout)
                finally:
                    if competitor:
                        competitor.stop()
                rows.append(row)
                print(f"{policy}, {load}: {row}", file=sys.stderr, flush=True)

    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(out / "results.csv", index=False)
    lines = [f"### Shared-CPU slowdown ({cores()} cores available; competing load: a second tiny FDD run)\n",
             "| policy | tiny FDD step, idle (s) | loaded (s) | slowdown | CPU s idle | CPU s loaded |"
             + (" suite slice idle (s) | loaded (s) | slowdown |" if args.suite else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|---:|---:|" if args.suite else "")]
    for policy in POLICIES:
        idle, loaded = (df[(df.policy == policy) & (df.load == w)].iloc[0] for w in ("idle", "loaded"))
        line = (f"| {policy} | {idle.step_s:.3f} | {loaded.step_s:.3f} | {loaded.step_s / idle.step_s:.1f}x "
                f"| {idle.cpu_s:.1f} | {loaded.cpu_s:.1f} |")
        if args.suite:
            line += f" {idle.suite_s:.1f} | {loaded.suite_s:.1f} | {loaded.suite_s / idle.suite_s:.1f}x |"
        lines.append(line)
    notes = [f"{r['policy']}, {r['load']}: {r[k]}" for r in rows for k in ("note", "suite_note") if r.get(k)]
    text = "\n".join(lines) + ("\n\n" + "; ".join(notes) if notes else "") + "\n"
    (out / "threads.md").write_text(text)
    print(text)
    print(f"wrote {out / 'threads.md'} and {out / 'results.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
