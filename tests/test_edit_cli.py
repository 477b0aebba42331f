"""edit.py end to end (the real entry point) and every bad-input case: one clear line, exit 2, no output left."""

import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from PIL import Image

from conftest import moving_square
from eve.data.video import read_video, to_uint8, write_video
from eve.editing.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A generated 20-frame 3:2 (48x32) mp4 at 12 fps."""
    path = tmp_path_factory.mktemp("clip") / "square.mp4"
    write_video(path, moving_square(20, 32, 48), 12)
    return path


def args(cfg, video, out, *extra, instruction="make the square blue"):
    return ["--config", str(cfg), "--video", str(video), "--instruction", instruction, "--caption",
            "a blue square", "--output", str(out), "--task", "texture", *extra]


def test_edit_py_end_to_end(tiny_dir, clip, tmp_path):
    out = tmp_path / "out" / "edited.mp4"
    r = subprocess.run([sys.executable, str(ROOT / "edit.py"), *args(tiny_dir / "eve.yaml", clip, out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    video = read_video(out)
    assert video.frames.shape == (20, 3, 32, 48)
    assert video.fps == 12
    assert list(out.parent.iterdir()) == [out], "only the output, no temporary files"


def test_same_seed_same_edit_other_seed_other_edit(tiny_dir, clip, tmp_path):
    outs = []
    for i, seed in enumerate(["1", "1", "2"]):
        out = tmp_path / f"e{i}.mp4"
        assert main(args(tiny_dir / "eve.yaml", clip, out, "--seed", seed)) == 0
        outs.append(read_video(out).frames)
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])


def test_folder_of_frames_gif_output_odd_size_and_overrides(tiny_dir, tmp_path):
    frames = to_uint8(moving_square(11, 27, 45))  # odd sizes, not a multiple of anything
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:04d}.png")
    out = tmp_path / "edited.gif"
    code = main(args(tiny_dir / "eve.yaml", folder, out, "--fps", "5", "--steps", "2", "edit.window_overlap=3"))
    assert code == 0
    video = read_video(out)
    assert video.frames.shape == (11, 3, 27, 45) and video.fps == 5
    out2 = tmp_path / "odd.mp4"
    assert main(args(tiny_dir / "eve.yaml", folder, out2)) == 0
    assert read_video(out2).frames.shape == (11, 3, 27, 45)


def test_gif_keeps_flat_colour_and_every_frame(tmp_path, caplog):
    """One palette per clip, no dithering: a clip of few colours comes back exactly (FFmpeg's fixed rgb8 palette
    turned 2 colours into 16), identical frames are not merged; a clip of more colours than a GIF holds says so."""
    import numpy as np

    flat = torch.full((5, 3, 16, 24), -0.6)
    flat[:, 0, 4:10, 6:14] = 0.7  # a flat square on a flat background, the same in every frame
    flat[3, 2] = 0.1
    write_video(tmp_path / "flat.gif", flat, 5)  # GIF timing is in 1/100 s: 5 fps is exact, 6 is not
    back = read_video(tmp_path / "flat.gif")
    assert back.frames.shape == flat.shape and back.fps == 5
    assert np.array_equal(to_uint8(back.frames), to_uint8(flat))
    noisy = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with caplog.at_level("INFO", logger="eve.data.video"):
        write_video(tmp_path / "noisy.gif", noisy, 6)
    assert "write .mp4" in caplog.text and read_video(tmp_path / "noisy.gif").frames.shape == noisy.shape


def test_single_frame_and_short_clips(tiny_dir, tmp_path):
    for n in (1, 3):
        src = tmp_path / f"n{n}.mp4"
        write_video(src, moving_square(n, 16, 16), 24)
        out = tmp_path / f"o{n}.mp4"
        assert main(args(tiny_dir / "eve.yaml", src, out)) == 0
        assert read_video(out).frames.shape[0] == n


def bad_cases(tiny_dir, clip, tmp):
    (tmp / "empty.mp4").write_bytes(b"")
    (tmp / "corrupt.mp4").write_bytes(bytes(range(256)) * 8)
    (tmp / "notes.txt").write_text("not a video\n" * 20)
    (tmp / "noframes").mkdir()
    with av.open(str(tmp / "zero.mkv"), "w") as c:  # a container that ends before its first frame
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()
    (tmp / "broken.yaml").write_text("model: [unclosed\n")
    (tmp / "noweights.yaml").write_text("model:\n  pretrained: ./nowhere\n  controlnet: ./nowhere\n"
                                        "  motion_adapter: ./nowhere\n  codec: identity\n")
    (tmp / "typo.yaml").write_text((tiny_dir / "eve.yaml").read_text() + "  resolutoin: 16\n")
    cfg = tiny_dir / "eve.yaml"
    return {
        "missing video": (args(cfg, tmp / "nope.mp4", "{out}"), "video not found"),
        "empty file": (args(cfg, tmp / "empty.mp4", "{out}"), "video file is empty"),
        "corrupt file": (args(cfg, tmp / "corrupt.mp4", "{out}"), "cannot decode video"),
        "not a video": (args(cfg, tmp / "notes.txt", "{out}"), "cannot decode video"),
        "zero frames (file)": (args(cfg, tmp / "zero.mkv", "{out}"), "has no frames"),
        "zero frames (folder)": (args(cfg, tmp / "noframes", "{out}"), "holds no image frames"),
        "unreadable config": (args(tmp / "broken.yaml", clip, "{out}"), "cannot read config"),
        "missing config": (args(tmp / "absent.yaml", clip, "{out}"), "config file not found"),
        "unknown config key": (args(tmp / "typo.yaml", clip, "{out}"), "resolutoin"),
        "missing weight folder": (args(tmp / "noweights.yaml", clip, "{out}"), "weight folder not found"),
        "empty instruction": (args(cfg, clip, "{out}", instruction="  "), "instruction is empty"),
        "unknown task": (args(cfg, clip, "{out}")[:-1] + ["sculpt"], "unknown task 'sculpt'"),
        "bad override": (args(cfg, clip, "{out}", "edit.steps=many"), "edit.steps"),
        "missing checkpoint": (args(cfg, clip, "{out}", "--checkpoint", str(tmp / "no.safetensors")),
                               "checkpoint not found"),
    }


CASES = ["missing video", "empty file", "corrupt file", "not a video", "zero frames (file)", "zero frames (folder)",
         "unreadable config", "missing config", "unknown config key", "missing weight folder", "empty instruction",
         "unknown task", "bad override", "missing checkpoint"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case, tiny_dir, clip, tmp_path, capsys):
    argv, message = bad_cases(tiny_dir, clip, tmp_path)[case]
    out = tmp_path / "out" / "edited.mp4"
    argv = [str(out) if a == "{out}" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edit.py: error: ") and message in err[-1], err
    assert not any("Traceback" in line for line in err)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_bad_output_suffix(tiny_dir, clip, tmp_path, capsys):
    assert main(args(tiny_dir / "eve.yaml", clip, tmp_path / "out.avi")) == 2
    assert "must end in .mp4 or .gif" in capsys.readouterr().err


def test_user_error_from_the_real_entry_point_has_no_traceback(tiny_dir, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "edit.py"), *args(tiny_dir / "eve.yaml", tmp_path / "x.mp4",
                        tmp_path / "o.mp4")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "video not found" in r.stderr


def test_failure_mid_edit_leaves_no_output(tiny_dir, clip, tmp_path, monkeypatch):
    """Killed after frames were already encoded (the writer streams): neither the output nor its temporary file."""
    from eve.editing import pipeline

    real = pipeline.stream_windows

    def interrupted(*a, **k):
        windows = real(*a, **k)
        yield next(windows)
        yield next(windows)
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "stream_windows", interrupted)
    out = tmp_path / "edited.mp4"
    assert main(args(tiny_dir / "eve.yaml", clip, out)) == 130
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    """An encoder failure half-way leaves neither the output nor a temporary file."""
    frames = moving_square(4, 16, 16)
    calls = {"n": 0}
    real = av.VideoFrame.from_ndarray

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*a, **k)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", flaky)
    with pytest.raises(RuntimeError):
        write_video(tmp_path / "v.mp4", frames, 8)
    assert list(tmp_path.iterdir()) == []
