import pytest

from eve.editing.windows import window_slices


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 15, 20, 33, 64])
@pytest.mark.parametrize("length,overlap", [(8, 1), (8, 4), (8, 7), (4, 2), (2, 1)])
def test_windows_write_every_frame_exactly_once(n, length, overlap):
    ws = window_slices(n, length, overlap)
    written = [0] + [f for w in ws for f in w.new]  # frame 0 comes from the edit teacher
    assert sorted(written) == list(range(n))
    for w in ws:
        assert 0 <= w.start < w.stop <= n
        assert w.stop - w.start == min(length, n)
        assert w.known >= 1
        assert all(f < w.start + w.known for f in range(w.start, w.start + w.known))
    for prev, w in zip(ws, ws[1:]):
        assert w.start + w.known == prev.stop, "a window's known frames are exactly the ones already edited"
        assert w.known >= overlap


def test_window_examples():
    assert [(w.start, w.stop, w.known) for w in window_slices(20, 8, 1)] == [(0, 8, 1), (7, 15, 1), (12, 20, 3)]
    assert [(w.start, w.stop, w.known) for w in window_slices(5, 8, 1)] == [(0, 5, 1)]


@pytest.mark.parametrize("args", [(0, 8, 1), (10, 1, 1), (10, 8, 0), (10, 8, 8)])
def test_bad_window_arguments(args):
    with pytest.raises(ValueError):
        window_slices(*args)
