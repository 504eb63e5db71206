"""Training data: grain pipelines of fixed-length video windows with tokenised captions.

Sources (``config.source``):

* ``folder``: a folder of ordinary video files plus a JSONL manifest (``manifest.jsonl`` by
  default), one object per line: ``{"video": "relative/path.mp4", "caption": "a red car ..."}``.
  Videos are decoded with PyAV inside grain's worker processes.
* ``tfds``: the same layout converted once into a TFDS dataset (``jaxvid.data.tfds_videos``),
  read with ``tfds.data_source`` (random access, no TensorFlow needed).
* ``toyworld``: procedural toy-world clips (``jaxvid.data.toyworld``), for tests and the
  built-in model.
* ``toyworld_edits``: toy-world edit pairs: each record also holds ``edited``, the ground-truth
  edit of its clip (same motion, same window), and the *edited* caption (for objectives that
  train on edits: ``objective.noising`` ``"lcm_edit"`` or ``"lcm_stream"``).

Every record becomes a random window of ``frames`` frames, sampled at ``fps`` (the video's own
rate when ``None``), scaled to cover ``size`` and center-cropped. Records that cannot be decoded
or are shorter than a window are skipped and counted (:attr:`VideoPipeline.skipped`), never
fatal. The order is deterministic for a seed; each process reads its own shard
(``shard_index``/``shard_count`` = ``jax.process_index()``/``jax.process_count()``), and the
iterator's position is checkpointable with grain's orbax handlers.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import grain
import numpy as np

from jaxvid.data.video import resize_cover_crop

SOURCES = ("folder", "tfds", "toyworld", "toyworld_edits")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "toyworld"
    path: str | None = None  # folder (folder source) or TFDS data_dir (tfds source)
    manifest: str = "manifest.jsonl"
    tfds_name: str = "jaxvid_videos"
    frames: int = 64  # frames per training video (the paper: 64)
    fps: float | None = None  # sampling rate of the window; None: the video's own
    size: tuple[int, int] = (512, 512)
    workers: int = 0  # grain worker processes decoding videos (0: in the main process)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"data source must be one of {SOURCES}, got {self.source!r}")
        if self.frames < 1 or min(self.size) < 8 or self.workers < 0 or (self.fps is not None and self.fps <= 0):
            raise ValueError(f"bad data config: frames {self.frames}, size {self.size}, workers {self.workers}, "
                             f"fps {self.fps}")


def read_manifest(root: str | Path, manifest: str = "manifest.jsonl") -> list[dict[str, str]]:
    """The manifest's records; malformed lines raise with their line number (a typo in the
    manifest is a setup error, unlike an unreadable video)."""
    path = Path(root) / manifest
    if not path.exists():
        raise FileNotFoundError(f"no manifest {path} (one JSON object per line: "
                                '{"video": "relative/path.mp4", "caption": "..."})')
    records = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            records.append({"video": str(Path(root) / rec["video"]), "caption": str(rec["caption"])})
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected an object with 'video' and 'caption' ({e})") from None
    if not records:
        raise ValueError(f"{path} lists no videos")
    return records


def decode_window(video: str | bytes, frames: int, fps: float | None, rng: np.random.Generator) -> np.ndarray | str:
    """A random window of ``frames`` frames of a video (a path, or an encoded file's bytes), or
    the reason there is none."""
    import io

    import av

    try:
        with av.open(io.BytesIO(video) if isinstance(video, bytes) else video) as c:
            if not c.streams.video:
                return "no video stream"
            stream = c.streams.video[0]
            decoded = [(float(f.time or 0.0), f.to_image()) for f in c.decode(stream)]
    except (av.error.FFmpegError, OSError) as e:
        return f"unreadable ({type(e).__name__})"
    if not decoded:
        return "no frames"
    if fps is None:
        if len(decoded) < frames:
            return f"{len(decoded)} frames < {frames}"
        start = int(rng.integers(0, len(decoded) - frames + 1))
        return np.stack([np.asarray(img) for _, img in decoded[start:start + frames]])
    times = np.asarray([t for t, _ in decoded])
    span = (frames - 1) / fps
    if times[-1] - times[0] < span:
        return f"{times[-1] - times[0]:.2f}s < {span:.2f}s"
    t0 = times[0] + rng.uniform(0, times[-1] - times[0] - span)
    picks = np.searchsorted(times, t0 + np.arange(frames) / fps - 1e-6)
    return np.stack([np.asarray(decoded[min(i, len(decoded) - 1)][1]) for i in picks])


class _Window(grain.transforms.RandomMap):
    """Record -> ``{"video": uint8 [F, H, W, 3], "caption": str}`` (and ``"edited"``, the same
    window of an edit pair's target) or ``{"skip": reason}``."""

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def random_map(self, record: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        cfg = self.cfg
        if "video_bytes" in record:  # tfds: the encoded file
            name = record["name"].decode() if isinstance(record["name"], bytes) else record["name"]
            frames = {"video": decode_window(record["video_bytes"], cfg.frames, cfg.fps, rng)}
        elif isinstance(record["video"], np.ndarray):  # toy world: already frames (an edit pair: both)
            name, n = "toy clip", len(record["video"])
            if n < cfg.frames:
                frames = {"video": f"{n} frames < {cfg.frames}"}
            else:
                start = int(rng.integers(0, n - cfg.frames + 1))
                frames = {k: record[k][start:start + cfg.frames] for k in ("video", "edited") if k in record}
        else:
            name = record["video"]
            frames = {"video": decode_window(name, cfg.frames, cfg.fps, rng)}
        if isinstance(frames["video"], str):
            return {"skip": f"{name}: {frames['video']}"}
        h, w = cfg.size
        for k, v in frames.items():
            frames[k] = (v if v.shape[1:3] == (h, w) else np.stack([resize_cover_crop(f, h, w) for f in v])).astype(np.uint8)
        caption = record["caption"]
        return {**frames, "caption": caption.decode() if isinstance(caption, bytes) else str(caption)}


class _Tokenize(grain.transforms.Map):
    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def map(self, record: dict[str, Any]) -> dict[str, Any]:
        from jaxvid.text import tokenize

        ids = tokenize(self.tokenizer, record["caption"], max_length=self.max_length)[0]
        return {**{k: record[k] for k in ("video", "edited") if k in record}, "ids": ids}


class VideoPipeline:
    """An iterable of local batches ``{"video": uint8 [B, F, H, W, 3], "ids": int32 [B, L]}``
    (``toyworld_edits``: and ``"edited"``, like ``"video"``).
    ``iterator()`` gives a checkpointable grain iterator; skipped records are counted."""

    def __init__(self, cfg: DataConfig, tokenizer, *, batch_size: int, max_length: int = 77,
                 shard_index: int = 0, shard_count: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.cfg, self.skipped, self.skip_reasons = cfg, 0, []
        source = self._source(cfg)
        ds = grain.MapDataset.source(source).shuffle(seed=cfg.seed)[shard_index::shard_count].repeat()
        it = ds.random_map(_Window(cfg), seed=cfg.seed).to_iter_dataset()
        if cfg.workers > 0:
            from absl import flags

            if not flags.FLAGS.is_parsed():  # grain's workers read absl flags; a non-absl program has none
                flags.FLAGS.mark_as_parsed()
            it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.workers))
        # tokenised in the consuming thread: one tokenizer object is not safe to share between threads
        self.dataset = it.filter(self._keep).map(_Tokenize(tokenizer, max_length)).batch(batch_size, drop_remainder=True)

    @staticmethod
    def _source(cfg: DataConfig):
        if cfg.source in ("folder", "tfds") and not cfg.path:
            raise ValueError(f"data source {cfg.source!r} needs data.path")
        if cfg.source in ("toyworld", "toyworld_edits"):
            from jaxvid.data.toyworld import ToyEdits, ToyWorld

            world = ToyWorld(cfg.seed, frames=cfg.frames, size=cfg.size[0])
            return world if cfg.source == "toyworld" else ToyEdits(world)
        if cfg.source == "tfds":
            import tensorflow_datasets as tfds

            return tfds.data_source(cfg.tfds_name, data_dir=cfg.path, split="train")
        return read_manifest(cfg.path, cfg.manifest)

    def _keep(self, record: dict[str, Any]) -> bool:
        if "skip" in record:
            self.skipped += 1
            self.skip_reasons = (self.skip_reasons + [record["skip"]])[-10:]
            return False
        return True

    def iterator(self):
        return iter(self.dataset)
