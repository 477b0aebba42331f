"""The README's and docs/' commands, verbatim, in the order shown (README first, then each page of docs/ in name
order; a command shown twice runs once), in a fresh copy of the repository (issues 15, 33).

Every command line of every ```bash block must be known here: the quick ones run and must succeed (some with a
check of what they wrote); the ones that need what this machine lacks (SD-1.5 weights, GPUs, an FDD run) must say
so in one line and exit 2 before any work; the long trainings and the suite itself are listed as skipped, with
their reason. A README command this walk does not know fails the test, so a new one cannot go untried.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RUN, NEEDS, SKIP = "run", "needs", "skip"
# (how the command starts, what the walk does, and why it skips or what the one error line must name); the first
# matching prefix wins.
RULES = [
    ("pip install", SKIP, "the install itself: .ci/run does it on a clean clone"),
    ("python -m pytest", SKIP, "the suite this test belongs to"),
    ("python -m eve.demo", RUN, ""),
    ("python -m eve.app", SKIP, "serves until stopped: tests/test_app.py drives it in Chromium"),
    ("python bench/app_load.py", SKIP, "starts the app and loads it with 8 clients: about a minute"),
    ("python edit.py --config configs/sd15/eve.yaml", NEEDS, "video not found: in.mp4"),  # the user's own video
    ("python edit.py --config data/shapes/teachers/eve.yaml", RUN, ""),
    ("python edit.py --video data/shapes", RUN, ""),  # no --config: the committed shapes teachers
    ("python -m eve.data.synthetic", RUN, ""),
    ("python -m eve.data --config", RUN, ""),
    ("python train_fdd.py --config configs/tiny.yaml", RUN, ""),
    ("python -m eve.export runs/shapes-", NEEDS, "checkpoint not found"),  # the shapes FDD runs are skipped
    ("python -m eve.export", RUN, ""),
    ("python bench/task_prediction.py", RUN, ""),
    ("python train_fdd.py --config configs/fdd/paper.yaml", NEEDS, "model.pretrained=stable-diffusion-v1-5"),
    ("accelerate launch", SKIP, "needs the 8 GPUs its launch config names"),
    ("python -m eve.train.real_samples --config configs/fdd/paper.yaml", NEEDS, "data.manifest is not set"),
    ("python -m eve.worlds.shapes train-teachers", SKIP, "trains teachers: 30 to 80 minutes on 2 cores"),
    ("python -m eve.worlds.shapes data", RUN, ""),
    ("python -m eve.worlds.shapes style-data", RUN, ""),
    ("python bench/world/gates.py", SKIP, "evaluates 70 clips x 8 methods and trains a probe: about 15 minutes"),
    ("python bench/world/disc_probe.py", SKIP, "samples and trains a probe: minutes"),
    ("python bench/world/critic_ceiling.py", SKIP, "trains four probes for 60 epochs: about 26 minutes"),
    ("python bench/world/sds_probe.py", SKIP, "six objectives x 120 steps on free latents: about 40 minutes"),
    ("python train_fdd.py --config configs/shapes/fdd.yaml", SKIP, "a shapes FDD run: about 45 minutes"),
    ("python bench/world/shapes.py --student runs/shapes-", NEEDS, "does not exist"),  # the FDD runs above were skipped
    ("python bench/world/shapes.py", SKIP, "the results table's baselines: 105 held-out clips x 11 methods, 30 minutes"),
    ("python -m eve.train.dreambooth --config configs/tiny.yaml", RUN, ""),
    ("python -m eve.data.triplets --captions data/shapes", RUN, ""),
    ("python -m eve.data.triplets --captions my_captions.txt", NEEDS, "captions file not found: my_captions.txt"),
    ("python train_fdd.py --config configs/tiny_lora_align.yaml", RUN, ""),
    ("python edit.py --image runs/demo", RUN, ""),
    ("python edit.py --video runs/demo", RUN, ""),
    ("python train_fdd.py --config configs/fdd/lora_align.yaml", NEEDS, "model.pretrained=stable-diffusion-v1-5"),
    ("python -m eve.train.dreambooth --images runs/shapes/style", SKIP, "trains the world's style LoRA: 90 s"),
    ("python train_fdd.py --config configs/shapes/lora_align.yaml", SKIP, "aligns the world's LoRA: about 8 minutes"),
    ("python bench/world/lora_align.py", SKIP, "needs the two alignment runs above"),
    ("python -m eve.train.real_samples --config configs/shapes/lora_align.yaml", SKIP,
     "samples the world's 300 alignment data points: about 4 minutes"),
    ("python -m eve.eval --config configs/sd15/eve.yaml", NEEDS, "--edits /data/tgve not found"),
    ("python -m eve.eval --edits data/shapes", RUN, ""),
    ("python -m eve.models.full", SKIP, "writes 2.8 GB of full-size random weights"),
    ("python bench/edit_speed.py", SKIP, "full-size edits on 2 CPU cores: about 20 minutes"),
    ("python bench/world/first_frame.py", SKIP, "70 held-out clips x 7 first frames x 2 seeds: about 10 minutes"),
    ("python bench/fdd_step.py --config runs/full/eve.yaml", SKIP, "a full-size FDD step on 2 CPU cores: 10 minutes"),
    ("python bench/stream_memory.py", SKIP, "edits 4K clips of up to 60 s: about 40 minutes"),
]


def pages(root: Path) -> list[Path]:
    """README.md, then every page of docs/ in name order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def all_commands(root: Path) -> list[str]:
    """Every page's commands in order, each once."""
    return list(dict.fromkeys(c for page in pages(root) for c in readme_commands(page.read_text())))


def readme_commands(text: str) -> list[str]:
    """Command lines of the ```bash blocks: continuations joined, comments and [optional] parts dropped, `&&`
    chains split."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#.*$", "", line) if not line.lstrip().startswith("#") else ""
            line = re.sub(r"\[[^\]]*\]", "", line)
            out += [" ".join(part.split()) for part in line.split("&&") if part.strip()]
    return out


def rule(command: str) -> tuple[str, str]:
    for prefix, action, why in RULES:
        if command.startswith(prefix):
            return action, why
    raise AssertionError(f"README / docs command unknown to tests/test_readme.py (add a rule): {command}")


def fresh_copy(dest: Path) -> Path:
    """The files a clone has: tracked and untracked-but-not-ignored ones."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def test_the_readme_commands_are_all_known():
    commands = all_commands(ROOT)
    assert len(readme_commands((ROOT / "README.md").read_text())) >= 10 and len(commands) >= 40
    for c in commands:
        rule(c)


def test_the_readme_is_a_front_door():
    """At most about 250 lines (issue 33); every docs/ page and picture it links to exists, and so does every
    relative link of every docs/ page."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
    for page in pages(ROOT):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_python_blocks_name_what_exists():
    """The Python API block needs SD-1.5 weights to run; what it imports and calls must at least exist."""
    import importlib

    blocks = [b for page in pages(ROOT) for b in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)]
    assert blocks
    for block in blocks:
        for module, names in re.findall(r"^from (\S+) import (.+)$", block, flags=re.M):
            mod = importlib.import_module(module)
            for name in names.split(","):
                assert hasattr(mod, name.strip()), f"README imports {name.strip()} from {module}"
        for method in re.findall(r"EveVideoEditPipeline\.(\w+)\(|pipe\.(\w+)\(", block):
            from eve.editing import EveVideoEditPipeline

            name = "".join(method)
            assert hasattr(EveVideoEditPipeline, name), f"README calls EveVideoEditPipeline.{name}"


# Commands that need nothing an earlier README command made: walked in a second test (its own fresh copy), so the
# two halves of the walk run side by side under pytest-xdist.
INDEPENDENT = ("python edit.py --config", "python edit.py --video data/shapes", "python -m eve.worlds.shapes", "python -m eve.train.real_samples",
               "python train_fdd.py --config configs/fdd/paper.yaml", "python bench/", "python -m eve.eval")


def walk(tmp_path: Path, independent: bool) -> Path:
    """Run the README's commands (the independent ones, or the rest in order) on a fresh copy; returns the copy."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    repo = fresh_copy(tmp_path / "eve")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(repo)}
    skipped, took = [], []
    for command in all_commands(repo):
        action, why = rule(command)
        if command.startswith(INDEPENDENT) != independent:
            continue
        if action == SKIP:
            skipped.append(f"{command[:60]}: {why}")
            continue
        args = command.split(" ", 1)
        argv = [sys.executable, *shlex.split(args[1])] if args[0] == "python" else shlex.split(command)
        start = time.perf_counter()
        r = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        took.append(f"{time.perf_counter() - start:6.1f} s  {command[:90]}")
        said = f"{command}\n{r.stderr[-3000:]}"
        if action == RUN:
            assert r.returncode == 0, said
        else:  # one line that names what is missing, exit 2, before any work
            errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
            assert r.returncode == 2 and len(errors) == 1 and why in errors[0] and "Traceback" not in r.stderr, said
    print("skipped README commands:\n" + "\n".join(skipped) + "\nseconds per command run:\n" + "\n".join(took))
    return repo


@pytest.mark.slow
def test_the_readme_commands_that_stand_alone_run_as_written(tmp_path):
    repo = walk(tmp_path, independent=True)
    assert (repo / "runs" / "edited" / "00000-add.gif").is_file()
    written = (repo / "runs" / "shapes" / "fdd" / "manifest.csv").read_text()
    assert written == (ROOT / "data" / "shapes" / "fdd" / "manifest.csv").read_text(), "the committed data reproduce"


@pytest.mark.slow
def test_the_readme_commands_run_as_written_on_a_fresh_copy(tmp_path):
    repo = walk(tmp_path, independent=False)
    # what the run commands promise
    assert (repo / "runs" / "demo" / "grid.png").is_file() and (repo / "runs" / "demo" / "plug_and_play.gif").is_file()
    assert (repo / "runs" / "demo" / "student.gif").is_file(), "the committed student is in the demo's grid"
    assert (repo / "runs" / "data-fdd" / "ckpt-000006" / "student_lora.safetensors").is_file()
    assert (repo / "runs" / "data-fdd-lora" / "pytorch_lora_weights.safetensors").is_file()
    page = (repo / "docs" / "data.md").read_text()
    claim = " ".join(re.search(r"the report\s+reads: (.*?)\.\n", page, re.S).group(1).split())
    report = (repo / "runs" / "data" / "report" / "report.md").read_text()
    said = {  # README phrase -> the report row it quotes
        r"(\d+) input files": "input files", r"(\d+) readable": "readable videos", r"(\d+) scenes": "scenes",
        r"(\d+) clips": "clips", r"(\d+) dropped as static": "static", r"(\d+) as text overlays": "text overlay",
        r"(\d+) kept": "after motion and text filters", r"(\d+) manifest rows": "manifest rows"}
    for phrase, row in said.items():
        number = re.search(phrase, claim).group(1)
        assert re.search(rf"^\| {re.escape(row)}[^|]*\| {number} \|$", report, re.M), f"{phrase}: {number}\n{report}"

