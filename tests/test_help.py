"""Every command's --help says what it does and shows its main options with their defaults (issue 11)."""

from __future__ import annotations

import importlib

import pytest

# (module with main(argv), what its help must say): a stage or key and a default from the config schema
CLIS = [
    ("eve.editing.cli", ["frame 0", "--checkpoint", "edit.captioner", "(default: 20)", "(default: template)"]),
    ("eve.train.cli", ["K-bin", "fdd.sds_only_steps", "(default: 1000)", "run.out_dir"]),
    ("eve.data.__main__", ["1. probe", "6. export", "motion_min", "(default: 0.3)", "instructions"]),
    ("eve.worlds.shapes.__main__", ["train-teachers", "autoencoder, backbone", "bench/world/gates.py"]),
    ("eve.demo", ["embedded default", "(default: runs/demo)"]),
    ("eve.app", ["browser", "bounded queue", "--max-seconds", "(default: 30.0)", "(default: 127.0.0.1)"]),
    ("eve.export", ["diffusers LoRA", "pytorch_lora_weights.safetensors", "--out"]),
    ("eve.models.tiny", ["tiny", "--vae"]),
    ("eve.data.synthetic", ["broken.mp4", "(default: runs/raw_videos)"]),
    ("eve.train.real_samples", ["teachers' samples", "--config"]),
    ("eve.train.dreambooth", ["DreamBooth-style", "--images", "--prompt", "(default: 400)"]),
    ("eve.data.triplets", ["no images", "--subject", "add the subject", "(default: template)"]),
    ("eve.models.full", ["full architecture size", "--only", "(default: float16)"]),
    ("eve.eval.__main__", ["Table 1", "--pickscore", "student=CKPT", "(default: 32)", "(default: 0.6)"]),
]


@pytest.mark.parametrize("module,said", CLIS, ids=[m for m, _ in CLIS])
def test_help_says_what_the_command_does(module, said, capsys):
    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert done.value.code == 0
    for text in said:
        assert " ".join(text.split()) in out, f"{module} --help lacks {text!r}:\n{out}"
