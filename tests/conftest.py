"""Shared fixtures: a tiny model set written once per session through the real `save_pretrained` layouts.
No test touches the network: HF_HUB_OFFLINE is set before any hub library is imported."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
if "EVE_CACHE" not in os.environ:  # the training pre-flight's frame counts: never the user's cache
    import tempfile

    os.environ["EVE_CACHE"] = tempfile.mkdtemp(prefix="eve-cache-")

import eve  # noqa: E402, F401  (first: it fits the thread pools before torch loads, eve/utils/threads.py)
import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject.toml) means the cores this process may use (affinity and cgroup quota), not the
    machine's CPU count."""
    from eve.utils.threads import cores

    return cores()


def pytest_configure(config):
    """Under pytest-xdist the workers share the cores: each worker, and every process it starts, gets its share of
    threads (EVE_NUM_THREADS, read by `import eve`), so two workers on 2 cores run one thread each instead of four
    threads fighting over two cores. Set here, in the controller, before the workers start; a user's value wins."""
    workers = getattr(config.option, "numprocesses", None)
    if workers and not hasattr(config, "workerinput") and "EVE_NUM_THREADS" not in os.environ:
        from eve.utils.threads import cores

        os.environ["EVE_NUM_THREADS"] = str(max(1, cores() // int(workers)))


@pytest.fixture
def call_main(capsys):
    """An entry point's main(argv) in this process, as its script runs it: (exit code, stdout, stderr), argparse's
    refusals (SystemExit) giving their code. What a subprocess would show, without its ~10 s of imports."""

    def call(main, *argv) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    from eve.models.tiny import write_tiny

    d = tmp_path_factory.mktemp("tiny")
    write_tiny(d)
    return d


@pytest.fixture(scope="session")
def tiny_cfg(tiny_dir):
    from eve.config import load_config

    return load_config(tiny_dir / "eve.yaml")


@pytest.fixture
def model(tiny_cfg):
    """A freshly loaded composed model (tests may attach or perturb a LoRA)."""
    from eve.models import EveModel

    torch.manual_seed(0)
    return EveModel.from_config(tiny_cfg.model)


def moving_square(num_frames: int = 20, height: int = 32, width: int = 48) -> torch.Tensor:
    from eve.demo import sample_clip

    return sample_clip(num_frames, height, width)
