"""Video reading/writing with PyAV: formats, the resize/crop policy, and clear errors."""

import numpy as np
import pytest
from PIL import Image

from jaxvid.data.video import VideoError, read_video, resize_cover_crop, video_fps, write_strip, write_video


def _frames(n=6, h=48, w=80):
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 0] = np.linspace(0, 250, n).astype(np.uint8)[:, None, None]
    f[:, :, : w // 2, 1] = 200
    return f


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_round_trip_formats(tmp_path, suffix):
    src = _frames()
    path = write_video(tmp_path / f"v{suffix}", src, fps=12)
    got = read_video(path, height=48, width=80)
    assert got.shape == src.shape
    assert np.abs(got.astype(int) - src.astype(int)).mean() < 12  # lossy codecs, same content
    if suffix != ".gif":
        assert abs(video_fps(path) - 12) < 0.5


def test_frame_folder_stride_and_max_frames(tmp_path):
    for i, f in enumerate(_frames(7)):
        Image.fromarray(f).save(tmp_path / f"{i:03d}.png")
    got = read_video(tmp_path, height=48, width=80, stride=2, max_frames=3)
    np.testing.assert_array_equal(got, _frames(7)[[0, 2, 4]])


def test_cover_and_center_crop_policy():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255  # centre half is white
    out = resize_cover_crop(img, 64, 64)  # scale to 64x128 then keep the centre 64 columns
    assert out.shape == (64, 64, 3)
    assert out[:, 2:-2].min() > 200  # only the white centre survives


def test_missing_unreadable_and_empty_inputs(tmp_path):
    with pytest.raises(VideoError, match="not found"):
        read_video(tmp_path / "nope.mp4", height=64, width=64)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoError, match="cannot"):
        read_video(bad, height=64, width=64)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(VideoError, match="no frames"):
        read_video(empty, height=64, width=64)
    with pytest.raises(VideoError, match="uint8"):
        write_video(tmp_path / "x.mp4", np.zeros((0, 8, 8, 3), np.uint8))


def test_strip(tmp_path):
    a, b = _frames(10), _frames(10)[::-1]
    path = write_strip(tmp_path / "s.png", [a, b], max_frames=4)
    assert np.asarray(Image.open(path)).shape == (96, 320, 3)
