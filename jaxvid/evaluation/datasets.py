"""Evaluation datasets. Each yields :class:`EvalItem`s; entries that are missing or unreadable
are reported (``dataset.skipped``) and left out, never fatal.

Layouts (``--dataset KIND:PATH``):

* ``tgve:ROOT`` — the LOVEU-TGVE 2023 release: ``ROOT/LOVEU-TGVE-2023_Dataset.csv`` (columns
  ``Video name``, ``Our GT caption``, ``Style Change Caption``, ``Object Change Caption``,
  ``Background Change Caption``, ``Multiple Changes Caption``) and the videos anywhere under
  ``ROOT`` as ``<Video name>.mp4`` (the release's ``DAVIS_480p/``, ``youtube_480p/``,
  ``videvo_480p/`` folders). One item per video and edit type.
* ``prompts:ROOT`` — SVDiff's evaluation set (66 videos of 32-150 frames, not public) or any set
  of your own: ``ROOT/prompts.jsonl`` with one object per line,
  ``{"video": "relative/path.mp4", "source_prompt": "...", "target_prompt": "...",
  "edit_type": "style"}`` (``edit_type`` optional).
* ``toyworld[:N[:FRAMES]]`` — ``N`` toy-world clips (default 8) of ``FRAMES`` frames (default
  16) cycling through the edit kinds, with the ground-truth edited video and region.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Iterator

import numpy as np

TGVE_CSV = "LOVEU-TGVE-2023_Dataset.csv"
TGVE_EDITS = {"style": "Style Change Caption", "object": "Object Change Caption",
              "background": "Background Change Caption", "multiple": "Multiple Changes Caption"}


@dataclasses.dataclass
class EvalItem:
    name: str
    frames: np.ndarray  # uint8 [F, H, W, 3] at the evaluation size
    source_prompt: str
    target_prompt: str
    edit_type: str
    truth: object | None = None  # toy world: the ToyEdit with the ground truth


class Dataset:
    """Items at ``size`` (cover + center crop), at most ``max_frames`` frames each."""

    def __init__(self, spec: str, *, size: tuple[int, int], max_frames: int | None = None):
        kind, _, rest = spec.partition(":")
        if kind not in ("tgve", "prompts", "toyworld"):
            raise ValueError(f"unknown dataset {spec!r}: tgve:ROOT, prompts:ROOT or toyworld[:N[:FRAMES]]")
        self.kind, self.size, self.max_frames = kind, size, max_frames
        self.skipped: list[str] = []
        if kind == "toyworld":
            parts = [int(p) for p in rest.split(":") if p] if rest else []
            self.entries = self._toyworld(*parts)
        else:
            root = Path(rest)
            if not root.is_dir():
                raise FileNotFoundError(f"dataset folder not found: {root}")
            self.entries = self._tgve(root) if kind == "tgve" else self._prompts(root)

    def _toyworld(self, n: int = 8, frames: int = 16) -> list[dict]:
        from jaxvid.data.toyworld import EDIT_KINDS

        return [{"name": f"toy{i:03d}_{EDIT_KINDS[i % len(EDIT_KINDS)]}", "index": i, "frames": frames,
                 "kind": EDIT_KINDS[i % len(EDIT_KINDS)]} for i in range(n)]

    def _tgve(self, root: Path) -> list[dict]:
        table = root / TGVE_CSV
        if not table.exists():
            raise FileNotFoundError(f"{root} has no {TGVE_CSV}")
        videos = {p.stem: p for p in root.rglob("*.mp4")}
        entries = []
        with table.open(newline="") as f:
            for row in csv.DictReader(f):
                name = (row.get("Video name") or "").strip()
                source = (row.get("Our GT caption") or "").strip()
                if name not in videos or not source:
                    self.skipped.append(f"{name or '<no name>'}: {'no video' if name not in videos else 'no caption'}")
                    continue
                for edit, column in TGVE_EDITS.items():
                    target = (row.get(column) or "").strip()
                    if target:
                        entries.append({"name": f"{name}_{edit}", "path": videos[name], "source": source,
                                        "target": target, "edit_type": edit})
        return entries

    def _prompts(self, root: Path) -> list[dict]:
        table = root / "prompts.jsonl"
        if not table.exists():
            raise FileNotFoundError(f"{root} has no prompts.jsonl")
        entries = []
        for n, line in enumerate(table.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                entries.append({"name": Path(r["video"]).stem, "path": root / r["video"], "source": r["source_prompt"],
                                "target": r["target_prompt"], "edit_type": r.get("edit_type", "")})
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                self.skipped.append(f"prompts.jsonl:{n}: {e}")
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[EvalItem]:
        from jaxvid.data.video import VideoError, read_video

        for e in self.entries:
            if self.kind == "toyworld":
                from jaxvid.data.toyworld import ToyWorld

                edit = ToyWorld(seed=7, size=self.size[0]).edit(e["index"], e["kind"], frames=e["frames"])
                yield EvalItem(e["name"], edit.source, edit.source_caption, edit.target_caption, e["kind"], edit)
                continue
            try:
                frames = read_video(e["path"], height=self.size[0], width=self.size[1], max_frames=self.max_frames)
            except VideoError as err:
                self.skipped.append(f"{e['name']}: {err}")
                continue
            yield EvalItem(e["name"], frames, e["source"], e["target"], e["edit_type"])
