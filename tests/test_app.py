"""The web app (issue 34) as a person uses it: `python -m eve.app` on a free port, driven by headless Chromium
(Debian's `chromium`, through Playwright). Screenshots of each state go to the test's temporary folder. Without
Chromium or Playwright the browser tests skip with one line; `.ci/run` installs Chromium so CI always runs them."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from eve.app import Limits, check_lora_upload, check_upload
from eve.data.video import read_video, write_video
from eve.errors import EveError

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clip(path: Path, frames: int, height: int = 32, width: int = 48) -> Path:
    from conftest import moving_square

    write_video(path, moving_square(frames, height, width), 8)
    return path


def test_uploads_are_checked_before_any_work(tmp_path):
    limits = Limits(max_upload_mb=1, max_seconds=2, max_frames=100, max_side=64)
    check_upload(str(clip(tmp_path / "ok.mp4", 12)), limits)
    cases = [(clip(tmp_path / "long.mp4", 24), "over the 2 s limit"),  # 3 s at 8 fps
             (clip(tmp_path / "long.gif", 24), "over the 2 s limit"),  # a container that may say no frame count
             (clip(tmp_path / "many.gif", 120), "120 frames, over the limit of 100"),
             (clip(tmp_path / "wide.mp4", 4, 32, 96), "96x32, over the 64 px limit"),
             (tmp_path / "notes.txt", "not a video"),
             (tmp_path / "text.mp4", "cannot decode video")]
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "text.mp4").write_text("hello")
    (tmp_path / "big.mp4").write_bytes(b"\0" * (2 * 2**20))
    cases.append((tmp_path / "big.mp4", "over the 1 MB limit"))
    for path, said in cases:
        with pytest.raises(EveError, match=re.escape(said)):
            check_upload(str(path), limits)
    with pytest.raises(EveError, match="must be a .safetensors file"):
        check_lora_upload(str(tmp_path / "notes.txt"), limits)
    pickled = tmp_path / "lora.safetensors"
    pickled.write_bytes(b"\x80\x04not a safetensors header")
    with pytest.raises(EveError):
        check_lora_upload(str(pickled), limits)
    with pytest.raises(EveError, match="--queue must be > 0"):
        Limits(queue=0).check()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app on a free port, its folder, its log; stopped (SIGTERM) at the end, which must remove its folder."""
    log = tmp_path_factory.mktemp("app") / "app.log"
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "eve.app", "--port", str(port), "--queue", "2",
                                 "--max-seconds", "20"], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert time.time() < deadline, log.read_text()[-3000:]
            time.sleep(1)
    folder = Path(re.search(r"folder (\S+)\)", log.read_text()).group(1))
    yield url, folder, log
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert not folder.exists(), "the app's folder is removed when it stops"


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("no Chromium here (Debian: apt-get install -y chromium; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def start_edit(page, url: str, video: Path, instruction: str, compare: bool = False) -> None:
    page.goto(url)
    page.locator("#source input[type=file]").set_input_files(str(video))
    page.locator("#source").get_by_text(video.name).first.wait_for(timeout=30_000)
    page.locator("#instruction textarea").fill(instruction)
    if compare:
        page.locator("#compare input").check()
    page.locator("#edit").click()


def edited_video(page, url: str, timeout: float = 240_000, which: str = "#result") -> bytes:
    video = page.locator(f"{which} video")
    video.wait_for(timeout=timeout)
    src = video.get_attribute("src")
    return page.request.get(src if src.startswith("http") else url.rstrip("/") + src).body()


@pytest.mark.slow
def test_an_edit_in_the_browser_gives_the_source_frame_count_and_size(app, browser, tmp_path):
    """A committed clip picked from the page's examples (its instruction filled in with it), with the comparison
    asked for: the student's edit to download, and input | plug-and-play | student."""
    url, _, _ = app
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_text("make the background dotted").first.click()  # the example row: clip 00000 and its instruction
    expect = pytest.importorskip("playwright.sync_api").expect
    expect(page.locator("#instruction textarea")).to_have_value("make the background dotted", timeout=30_000)
    page.locator("#compare input").check()
    page.locator("#edit").click()
    source = read_video(ROOT / "data" / "shapes" / "fdd" / "clips" / "00000", fps=8)
    (tmp_path / "edited.mp4").write_bytes(edited_video(page, url))
    (tmp_path / "grid.mp4").write_bytes(edited_video(page, url, which="#grid"))
    page.screenshot(path=str(tmp_path / "finished.png"), full_page=True)  # docs/app.png is one
    got, want, grid = read_video(tmp_path / "edited.mp4"), source, read_video(tmp_path / "grid.mp4")
    assert got.frames.shape == want.frames.shape and got.fps == want.fps
    F, C, H, W = want.frames.shape
    assert grid.frames.shape == (F, C, H, 3 * W), "input | plug-and-play | student, side by side"
    assert re.search(r"task.*caption.*plug-and-play.*NFE.*student.*NFE", page.locator("#status").inner_text(), re.S)


@pytest.mark.slow
def test_a_bad_upload_is_one_line_in_the_page(app, browser, tmp_path):
    url, _, _ = app
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is a text file, not a video")
    page = browser.new_page()
    start_edit(page, url, fake, "make it night")
    toast = page.get_by_text(re.compile("cannot decode video holiday.mp4"))
    toast.first.wait_for(timeout=60_000)
    page.screenshot(path=str(tmp_path / "refused.png"), full_page=True)
    assert str(app[1]) not in toast.first.inner_text(), "the page names the upload, not the app's own path"


@pytest.mark.slow
def test_edits_wait_in_the_queue_a_full_queue_refuses_and_a_cancel_leaves_nothing(app, browser, tmp_path):
    """The app runs with --queue 2: one edit running, two waiting, a fourth refused."""
    url, folder, _ = app
    long = clip(tmp_path / "long.mp4", 120)  # 15 s at 8 fps: long enough to be seen running
    first, second, third, fourth = (browser.new_page() for _ in range(4))
    start_edit(first, url, long, "make the background dotted")
    first.locator("#status").get_by_text(re.compile("frame")).first.wait_for(timeout=120_000)
    short = clip(tmp_path / "short.mp4", 8)
    start_edit(second, url, short, "add a green square")
    second.get_by_text(re.compile(r"queue: \d+/\d+")).first.wait_for(timeout=30_000)  # its place, as Gradio shows it
    second.screenshot(path=str(tmp_path / "queued.png"), full_page=True)
    start_edit(third, url, short, "remove the red square")
    third.get_by_text(re.compile(r"queue: \d+/\d+")).first.wait_for(timeout=30_000)
    start_edit(fourth, url, short, "make it night")
    # Gradio's page words a full queue so ("queue is full" in its log)
    fourth.get_by_text(re.compile(r"currently busy|queue is full", re.I)).first.wait_for(timeout=30_000)
    fourth.screenshot(path=str(tmp_path / "refused-full.png"), full_page=True)
    before = {p for p in (folder / "sessions").rglob("*") if p.is_file()}  # other tests' sessions, if any
    first.locator("#cancel").click()
    edited_video(second, url)  # the queued edits run once the first is cancelled
    edited_video(third, url)
    first.screenshot(path=str(tmp_path / "cancelled.png"), full_page=True)
    assert first.locator("#result video").count() == 0, "the cancelled edit shows no result"
    written = {p for p in (folder / "sessions").rglob("*") if p.is_file()} - before
    assert len(written) == 2, f"only the queued edits' outputs are left: {written}"
    assert not [p for p in (folder / "sessions").rglob("*") if ".tmp" in p.name], "no partial file is left"
