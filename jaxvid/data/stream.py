"""Live frame sources for ``jaxvid stream``: a video file, raw RGB frames on a pipe, or a V4L2
camera, read on a background thread with a policy for frames that arrive faster than they are
processed: ``queue`` (keep every frame, the reader waits when 64 are pending) or ``drop``
(keep only the newest frame; for live cameras).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from jaxvid.data.video import VideoError, resize_cover_crop

_END = object()


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes (fewer only at EOF). Pipes with a file descriptor are read with
    ``os.read``: a reader thread blocked there holds no lock of Python's buffered stdin, so
    the interpreter can exit while the pipe is still open (Ctrl-C on a live stream)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream.read(size)
    chunks, got = [], 0
    while got < size:
        chunk = os.read(fd, size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def raw_frames(stream: BinaryIO, in_height: int, in_width: int, height: int, width: int) -> Iterator[np.ndarray]:
    """Frames of packed RGB24 bytes (``in_height x in_width x 3`` each) from a pipe, until EOF.
    A closed pipe ends the stream; a trailing partial frame is an error."""
    size = in_height * in_width * 3
    while True:
        try:
            buf = _read_exact(stream, size)
        except (BrokenPipeError, ValueError, OSError) as e:  # closed or broken pipe
            raise VideoError(f"input pipe closed: {e}") from None
        if not buf:
            return
        if len(buf) < size:
            raise VideoError(f"input ended in the middle of a frame ({len(buf)} of {size} bytes); "
                             f"is --input-size {in_width}x{in_height} right?")
        yield resize_cover_crop(np.frombuffer(buf, np.uint8).reshape(in_height, in_width, 3), height, width)


class FrameSource:
    """An opened input: its frames (an iterator), frame rate and length where known."""

    def __init__(self, frames: Iterator[np.ndarray], fps: float | None = None, total: int | None = None):
        self.frames, self.fps, self.total = frames, fps, total

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames


def _open_container(spec: str, **kw):
    import av

    try:
        return av.open(spec, **kw)
    except (av.error.FFmpegError, OSError) as e:
        what = "video device" if spec.startswith("/dev/") else "video"
        raise VideoError(f"cannot open {what} {spec}: {e}") from None


def _decoded(container, spec: str, height: int, width: int) -> FrameSource:
    """Decode the first frame now (so a corrupt or empty input fails before any work), then
    yield it and the rest lazily."""
    import av

    if not container.streams.video:
        container.close()
        raise VideoError(f"{spec} has no video stream")
    stream = container.streams.video[0]
    fps = float(stream.average_rate) if stream.average_rate else None
    total = stream.frames or None
    frames = container.decode(video=0)
    try:
        first = next(frames, None)
    except av.error.FFmpegError as e:
        container.close()
        raise VideoError(f"cannot decode video {spec}: {e}") from None
    if first is None:
        container.close()
        raise VideoError(f"{spec} contains no frames")

    def gen():
        with container:
            yield resize_cover_crop(first.to_image(), height, width)
            try:
                for frame in frames:
                    yield resize_cover_crop(frame.to_image(), height, width)
            except av.error.FFmpegError as e:
                raise VideoError(f"cannot decode video {spec}: {e}") from None

    return FrameSource(gen(), fps, total)


def open_source(spec: str, height: int, width: int, input_size: tuple[int, int] | None = None) -> FrameSource:
    """``-`` (raw RGB on stdin, needs ``input_size``), ``/dev/video*`` (V4L2), or a video file,
    opened and probed now: a missing, corrupt or empty input is an error before any work."""
    if spec == "-":
        if input_size is None:
            raise VideoError("raw frames on stdin need --input-size HxW (the size of each incoming frame)")
        return FrameSource(raw_frames(sys.stdin.buffer.raw, input_size[0], input_size[1], height, width))
    if spec.startswith("/dev/video"):
        return _decoded(_open_container(spec, format="v4l2"), spec, height, width)
    path = Path(spec)
    if not path.exists():
        raise VideoError(f"input not found: {spec}")
    if path.is_dir():
        raise VideoError(f"{spec} is a folder; stream reads a video file, '-' or /dev/videoN")
    return _decoded(_open_container(str(path)), spec, height, width)


class ThreadedSource:
    """Reads a frame iterator on a thread; ``policy`` decides what happens when the consumer is
    slower. Iterating yields ``(frame, arrival_time)``; errors of the reader are re-raised."""

    def __init__(self, frames: Iterator[np.ndarray], policy: str = "queue"):
        if policy not in ("queue", "drop"):
            raise ValueError(f"policy must be 'queue' or 'drop', got {policy!r}")
        self.policy = policy
        self.dropped = 0
        self._q: queue.Queue = queue.Queue(maxsize=64 if policy == "queue" else 1)
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(frames,), daemon=True)
        self._thread.start()

    def _run(self, frames: Iterator[np.ndarray]) -> None:
        try:
            for f in frames:
                if self._stop.is_set():
                    return
                item = (f, time.perf_counter())
                if self.policy == "drop":
                    try:
                        self._q.get_nowait()
                        self.dropped += 1
                    except queue.Empty:
                        pass
                    self._q.put(item)
                else:
                    while not self._stop.is_set():
                        try:
                            self._q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
        except BaseException as e:  # handed to the consumer
            self._error = e
        finally:
            self._q.put(_END)

    def __iter__(self):
        while True:
            try:  # a timed wait: Ctrl-C is handled even while a live source sends nothing
                item = self._q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                if self._error is not None:
                    raise self._error
                return
            yield item

    def close(self) -> None:
        self._stop.set()
