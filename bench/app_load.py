"""Does the web app stay up and correct under load? N clients at once against `python -m eve.app` on 127.0.0.1.

    python bench/app_load.py [--clients 8] [--bad 2] [--queue 4] [--frames 12] [--timeout 600]

Starts the app (the embedded default: the shapes-world teachers and student) on a free port of 127.0.0.1, then
`--clients` threads submit edits through Gradio's own client at the same moment, `--bad` of them a text file named
.mp4. Reports how many edits completed, were refused (the queue full), rejected (a bad upload: its one line) or
failed otherwise, each client's wait in the queue (from submitting to its edit starting) at p50 / p95, and whether
every completed edit is a video of the source's frame count and size and the server answers afterwards. The count of clients and the time are bounded (--timeout).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from eve.data.video import read_video, write_video  # noqa: E402
from eve.demo import sample_clip  # noqa: E402
from eve.utils.tables import markdown  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int, queue: int, log: Path, timeout: float) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "eve.app", "--port", str(port), "--queue", str(queue)],
                                cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not alive(port):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(f"the app did not start:\n{log.read_text()[-2000:]}")
        time.sleep(1)
    return proc


def alive(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
        return True
    except OSError:
        return False


def client_run(url: str, video: Path, started: threading.Event, result: dict) -> None:
    """One client: submit, note when the edit leaves the queue, wait for the answer."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    started.wait()
    t0 = time.perf_counter()
    job = client.submit(handle_file(str(video)), "make the background dotted", "", "predict", 3, 1.0, 0, "teacher",
                        None, None, False, api_name="/run")
    began = None
    while not job.done():
        status = job.status()
        if began is None and status.code.name in ("PROCESSING", "ITERATING", "PROGRESS"):
            began = time.perf_counter()
        time.sleep(0.05)
    try:
        outputs = job.outputs()
        job.result()
        result.update(outcome="completed", video=outputs[-1][0], wait=(began or time.perf_counter()) - t0)
    except Exception as e:  # noqa: BLE001  every refusal and error is one of the outcomes counted
        text = str(e)
        outcome = ("refused" if re.search(r"queue is full", text, re.I) else
                   "rejected" if re.search(r"cannot decode video|not a video", text) else "error")
        result.update(outcome=outcome, reason=text[:160])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/app_load.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8, help="edits submitted at once (at most 32)")
    ap.add_argument("--bad", type=int, default=2, help="how many of them upload a text file named .mp4")
    ap.add_argument("--queue", type=int, default=4, help="the app's --queue (clients beyond queue + 1 are refused)")
    ap.add_argument("--frames", type=int, default=12, help="frames of each client's clip")
    ap.add_argument("--timeout", type=float, default=600, help="seconds for the whole run")
    args = ap.parse_args(argv)
    if not 1 <= args.clients <= 32 or not 0 <= args.bad <= args.clients:
        ap.error("--clients must be in [1, 32] and --bad in [0, --clients]")
    work = Path(tempfile.mkdtemp(prefix="eve-app-load-"))
    good, bad = work / "clip.mp4", work / "notes.mp4"
    write_video(good, sample_clip(args.frames, 32, 48), 8)
    bad.write_text("not a video")
    port = free_port()
    proc = start_app(port, args.queue, work / "app.log", 180)
    url = f"http://127.0.0.1:{port}/"
    try:
        started = threading.Event()
        results = [{} for _ in range(args.clients)]
        threads = [threading.Thread(target=client_run, args=(url, bad if i < args.bad else good, started, results[i]),
                                    daemon=True) for i in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(2)  # every client connected: they submit together
        t0 = time.perf_counter()
        started.set()
        for t in threads:
            t.join(timeout=max(1.0, args.timeout - (time.perf_counter() - t0)))
        source = read_video(good)
        correct = sum(1 for r in results if r.get("outcome") == "completed"
                      and read_video(r["video"]).frames.shape == source.frames.shape)
        waits = sorted(r["wait"] for r in results if "wait" in r)
        count = {k: sum(r.get("outcome") == k for r in results) for k in ("completed", "refused", "rejected", "error")}
        row = {"clients": args.clients, "malformed": args.bad, "queue": args.queue, **count,
               "unfinished": args.clients - sum(count.values()), "completed and correct": correct,
               "wait p50 s": round(statistics.median(waits), 2) if waits else None,
               "wait p95 s": round(waits[min(len(waits) - 1, int(0.95 * len(waits)))], 2) if waits else None,
               "seconds": round(time.perf_counter() - t0, 1), "server up after": alive(port)}
        print(markdown(pd.DataFrame([row]).set_index("clients")))
        for r in results:
            if r.get("outcome") == "error":
                print(f"error: {r['reason']}")
        return 0 if row["server up after"] and correct == count["completed"] else 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
