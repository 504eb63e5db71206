"""A TFDS dataset of captioned videos, built once from the ``folder`` layout (a folder of video
files plus ``manifest.jsonl``) and read with ``tfds.data_source`` (random access over
ArrayRecord files; TensorFlow is not needed to build or read it).

Each example keeps the *encoded* video file (``video_bytes``, decoded by PyAV at training time,
so the dataset is as small as the videos) and its ``caption``. Build it with::

    python -m jaxvid.data.tfds_videos --manual-dir ./my_videos --data-dir ./tfds

then train with ``--config.data.source=tfds --config.data.path=./tfds``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxvid.data.pipeline import read_manifest


class JaxvidVideos(tfds.core.GeneratorBasedBuilder):
    """Captioned videos from a local folder (manual download)."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the videos in a folder with a manifest.jsonl listing them, one JSON object per line: "
        '{"video": "relative/path.mp4", "caption": "..."}; pass that folder as manual_dir.'
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Captioned videos for SVDiff training (encoded video files and captions).",
            features=tfds.features.FeaturesDict({
                "video_bytes": tfds.features.Tensor(shape=(), dtype=np.object_),
                "caption": tfds.features.Text(),
                "name": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(Path(dl_manager.manual_dir))}

    def _generate_examples(self, root: Path):
        for rec in read_manifest(root):
            path = Path(rec["video"])
            if not path.exists():
                continue  # listed but absent: the pipeline would skip it anyway
            yield str(path.relative_to(root)), {"video_bytes": path.read_bytes(), "caption": rec["caption"],
                                                 "name": str(path.relative_to(root))}


def build(manual_dir: str | Path, data_dir: str | Path) -> Path:
    """Build (or reuse) the dataset; returns its folder."""
    builder = JaxvidVideos(data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return Path(builder.data_dir)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manual-dir", required=True, help="folder of videos with manifest.jsonl")
    ap.add_argument("--data-dir", required=True, help="where TFDS writes the dataset")
    args = ap.parse_args()
    print(f"built {build(args.manual_dir, args.data_dir)}")


if __name__ == "__main__":
    main()
