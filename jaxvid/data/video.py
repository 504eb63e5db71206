"""Reading and writing ordinary video files with PyAV (bundled FFmpeg).

Inputs: any container FFmpeg reads (mp4, webm, mkv, mov, gif, ...) or a folder of frames
(png/jpg/jpeg/webp/bmp, sorted by name). **Resize/crop policy**: each frame is scaled
(bicubic) so that it covers the target ``height x width`` while keeping its aspect ratio,
then center-cropped to exactly that size; nothing is stretched, the excess of the longer
side is cut equally from both ends.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class VideoError(ValueError):
    """A video cannot be read or written (missing, unreadable, empty, wrong shape)."""


def resize_cover_crop(frame: np.ndarray | Image.Image, height: int, width: int) -> np.ndarray:
    """Scale to cover ``height x width`` keeping aspect, then center-crop (see module doc)."""
    img = frame if isinstance(frame, Image.Image) else Image.fromarray(frame)
    img = img.convert("RGB")
    scale = max(height / img.height, width / img.width)
    new = (max(width, round(img.width * scale)), max(height, round(img.height * scale)))
    if new != img.size:
        img = img.resize(new, Image.BICUBIC)
    left, top = (img.width - width) // 2, (img.height - height) // 2
    return np.asarray(img.crop((left, top, left + width, top + height)))


def _frames_from_folder(folder: Path):
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"no frames in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    for f in files:
        try:
            with Image.open(f) as im:
                yield im.convert("RGB")
        except OSError as e:
            raise VideoError(f"cannot read frame {f}: {e}") from None


def _frames_from_file(path: Path):
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot open video {path}: {e}") from None
    with container:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_image()
        except av.error.FFmpegError as e:
            raise VideoError(f"cannot decode video {path}: {e}") from None


def video_fps(path: str | Path) -> float | None:
    """Frame rate of a video file; ``None`` for frame folders and files that state none."""
    path = Path(path)
    if path.is_dir():
        return None
    import av

    try:
        with av.open(str(path)) as c:
            rate = c.streams.video[0].average_rate if c.streams.video else None
            return float(rate) if rate else None
    except (av.error.FFmpegError, OSError):
        return None


def read_video(
    path: str | Path,
    *,
    height: int,
    width: int,
    max_frames: int | None = None,
    stride: int = 1,
) -> np.ndarray:
    """uint8 frames ``[F, height, width, 3]`` of a video file or frame folder (first
    ``max_frames`` after taking every ``stride``-th frame)."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"input video not found: {path}")
    if stride < 1:
        raise VideoError(f"stride must be >= 1, got {stride}")
    source = _frames_from_folder(path) if path.is_dir() else _frames_from_file(path)
    frames = []
    for i, img in enumerate(source):
        if i % stride:
            continue
        frames.append(resize_cover_crop(img, height, width))
        if max_frames is not None and len(frames) >= max_frames:
            break
    if not frames:
        raise VideoError(f"{path} contains no frames")
    return np.stack(frames)


class VideoWriter:
    """Incremental writer (frames arrive one by one, e.g. from a stream): ``.gif`` through
    Pillow, ``.webm`` as VP9, anything else (``.mp4``, ``.mkv``, ``.mov``) as H.264 yuv420p
    (odd sides padded by one pixel). Use as a context manager: closing always finalises the
    file with every frame written so far."""

    def __init__(self, path: str | Path, fps: float = 8.0):
        self.path, self.fps = Path(path), fps
        self.count = 0
        self._container = self._stream = None
        self._gif: list[Image.Image] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        import av

        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise VideoError(f"expected a uint8 frame [H, W, 3], got {frame.dtype} {frame.shape}")
        self.count += 1
        if self.path.suffix.lower() == ".gif":
            self._gif.append(Image.fromarray(frame))
            return
        h, w = frame.shape[:2]
        if h % 2 or w % 2:  # yuv420p needs even sides
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._container is None:
            codec = "libvpx-vp9" if self.path.suffix.lower() == ".webm" else "libx264"
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1000))
            self._stream.width, self._stream.height = frame.shape[1], frame.shape[0]
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": "18"}
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self._container.mux(packet)

    def close(self) -> None:
        if self._gif:
            self._gif[0].save(self.path, save_all=True, append_images=self._gif[1:],
                              duration=max(1, round(1000 / self.fps)), loop=0)
            self._gif = []
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_video(path: str | Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write uint8 ``[F, H, W, 3]`` frames (formats as :class:`VideoWriter`)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise VideoError(f"expected uint8 frames [F>0, H, W, 3], got {frames.dtype} {frames.shape}")
    with VideoWriter(path, fps) as w:
        for f in frames:
            w.write(f)
    return Path(path)


def write_strip(path: str | Path, rows: list[np.ndarray], max_frames: int = 8) -> Path:
    """A PNG with one row per video (e.g. source above edited), ``max_frames`` evenly spaced columns."""
    n = len(rows[0])
    idx = np.unique(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int))
    grid = np.concatenate([np.concatenate(list(r[idx]), axis=1) for r in rows], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
