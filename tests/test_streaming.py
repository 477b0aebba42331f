"""Streaming video I/O (issue 10): a streamed edit is the in-memory edit, holds about one window whatever the clip's
length, and keeps a variable-frame-rate source's timestamps."""

from fractions import Fraction

import av
import pytest
import torch

from conftest import moving_square
from eve.data.video import VideoReader, VideoWriter, read_video, to_uint8, write_video
from eve.editing.cli import main
from eve.editing.frames import Clip
from eve.editing.pipeline import edit_windows, stream_windows
from eve.models.composed import Cond, Role


@pytest.mark.parametrize("n,overlap", [(1, 1), (5, 1), (20, 1), (23, 3)])
def test_a_streamed_clip_edits_as_the_whole_tensor_does_holding_one_window(model, n, overlap):
    src = moving_square(n, 16, 16)[None]  # tiny set: 16 px working size, 4-frame windows
    text = model.encode_text(["a blue square", "make it blue"], Role.STUDENT)
    base = Cond(caption=text[:1], instruction=text[1:], task=torch.tensor([0]))
    first = torch.randn(1, model.latent_channels, 16 // model.codec.scale_factor, 16 // model.codec.scale_factor,
                        generator=torch.Generator().manual_seed(1))
    steps = torch.tensor([900, 500, 100])
    whole = edit_windows(model, src, base, first, steps=steps, overlap=overlap, generator=torch.Generator().manual_seed(0))

    held, read = [0], []

    def frames():
        for i, f in enumerate(src[0]):
            read.append(i)
            held.append(clip.held + 1)  # with the frame being read
            yield f

    clip = Clip(stream=frames(), size=(16, 16))
    chunks = list(stream_windows(model, clip, base, first, steps=steps, overlap=overlap,
                                 generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.cat(chunks, 1), whole)
    assert read == list(range(n)), "every frame read once, in order"
    L = model.num_frames
    assert max(held) <= 2 * L - overlap, "a window and the next one's new frames at most, whatever the length"


def test_clip_refuses_released_frames():
    clip = Clip(stream=iter(torch.zeros(6, 3, 8, 8)), size=(4, 4))
    assert clip.fill(4) == 4 and clip.fill(10) == 6
    clip.release(3)
    assert clip.get(3, 6).shape == (1, 3, 3, 4, 4) and clip.held == 3
    with pytest.raises(IndexError):
        clip.get(2, 4)


def vfr_clip(path, pts, time_base=Fraction(1, 1000), size=16):
    """An H.264 mp4 whose frames sit at the given (uneven) timestamps."""
    frames = to_uint8(moving_square(len(pts), size, size))
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.codec_context.time_base = time_base
        for image, p in zip(frames, pts):
            f = av.VideoFrame.from_ndarray(image, format="rgb24")
            f.pts, f.time_base = p, time_base
            for packet in s.encode(f):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def times(path) -> list[float]:
    with av.open(str(path)) as c:
        return [round(float(f.time), 3) for f in c.decode(c.streams.video[0])]


def test_variable_frame_rate_keeps_its_timestamps_unless_fps_is_given(tiny_dir, tmp_path):
    pts = [0, 40, 60, 200, 220, 500, 520, 540, 1000]  # ms: bursts and gaps
    src = vfr_clip(tmp_path / "vfr.mp4", pts)
    assert times(src) == [p / 1000 for p in pts]
    base = ["--config", str(tiny_dir / "eve.yaml"), "--video", str(src), "--instruction", "make it blue",
            "--caption", "a blue square", "--task", "texture"]
    assert main([*base, "--output", str(tmp_path / "out.mp4")]) == 0
    assert times(tmp_path / "out.mp4") == [p / 1000 for p in pts]
    assert main([*base, "--output", str(tmp_path / "flat.mp4"), "--fps", "10"]) == 0
    assert times(tmp_path / "flat.mp4") == [i / 10 for i in range(len(pts))]


def test_writing_frame_by_frame_is_writing_the_clip_at_once(tmp_path):
    clip = moving_square(7, 16, 24)
    with VideoWriter(tmp_path / "a.mp4", 12) as w:
        for f in clip:
            w.write(f[None])
    write_video(tmp_path / "b.mp4", clip, 12)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    with VideoReader(tmp_path / "a.mp4") as r:
        frames = [f for f, _ in r]
        assert r.fps == 12 and r.frame_count == 7
    assert torch.equal(torch.stack(frames), read_video(tmp_path / "a.mp4").frames)


def test_a_portrait_clip_comes_back_portrait(tiny_dir, tmp_path):
    src = write_video(tmp_path / "portrait.mp4", moving_square(9, 40, 24), 8)
    out = tmp_path / "out.mp4"
    assert main(["--config", str(tiny_dir / "eve.yaml"), "--video", str(src), "--instruction", "make it blue",
                 "--caption", "a blue square", "--task", "texture", "--output", str(out)]) == 0
    assert read_video(out).frames.shape == (9, 3, 40, 24)
