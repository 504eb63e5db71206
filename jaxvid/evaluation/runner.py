"""The resumable evaluation run behind ``jaxvid eval``: methods x dataset items -> edited videos,
per-item metrics, and tables (markdown, CSV), plots and contact sheets.

Layout of ``out``: ``<method>/<item>.mp4`` (every output kept) and ``<method>/<item>.json``
(its metrics and timings: an item whose JSON exists is not recomputed, so a killed run resumes),
``sheets/<item>.png`` (source, ground truth when known, then every method; 8 frames),
``summary.csv`` / ``summary.md`` (means per method) and ``summary.png`` (one bar chart per metric).
"""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxvid.evaluation.datasets import Dataset, EvalItem
from jaxvid.evaluation.methods import Method


def evaluate_item(method: Method, item: EvalItem, scorer=None) -> dict:
    frames, timings = method.run(item)
    row = {"method": method.name, "item": item.name, "edit_type": item.edit_type, "frames": len(frames), **timings}
    if method.params is not None:
        row["extra_params"] = method.params
    if scorer is not None:
        row.update(scorer.video_metrics(frames, item.target_prompt, item.source_prompt))
    if item.truth is not None:
        from jaxvid.metrics.toyworld import toy_metrics

        row.update(toy_metrics(frames, item.truth))
    return row, frames


def _sheet(path: Path, item: EvalItem, outputs: dict[str, np.ndarray]) -> None:
    from jaxvid.data.video import write_strip

    rows = [item.frames] + ([item.truth.target] if item.truth is not None else []) + list(outputs.values())
    n = min(len(r) for r in rows)
    write_strip(path, [r[:n] for r in rows], max_frames=8)


def method_folder(name: str) -> str:
    """A method's output folder: its name with anything a path cannot hold replaced
    (``svdiff@runs/x/export`` -> ``svdiff@runs_x_export``)."""
    return re.sub(r"[^A-Za-z0-9._@+=-]+", "_", name).strip("._") or "method"


def run(dataset: Dataset, methods: Sequence[Method], out: Path, *, scorer=None, progress: bool = True) -> list[dict]:
    """Evaluate every method on every item (skipping finished ones); returns all rows."""
    from tqdm import tqdm

    from jaxvid.data.video import read_video, write_video

    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    items = list(dataset)
    with tqdm(total=len(items) * len(methods), desc="evaluating", unit="video", disable=not progress) as bar:
        for item in items:
            outputs = {}
            for m in methods:
                folder = out / method_folder(m.name)
                folder.mkdir(exist_ok=True)
                result, video = folder / f"{item.name}.json", folder / f"{item.name}.mp4"
                if result.exists() and video.exists():  # finished in an earlier run
                    rows.append(json.loads(result.read_text()))
                    h, w = item.frames.shape[1:3]
                    outputs[m.name] = read_video(video, height=h, width=w)
                else:
                    row, frames = evaluate_item(m, item, scorer)
                    write_video(video, frames, fps=8)
                    result.write_text(json.dumps(row, indent=1))
                    rows.append(row)
                    outputs[m.name] = frames
                bar.update(1)
            _sheet(out / "sheets" / f"{item.name}.png", item, outputs)
    if dataset.skipped:
        (out / "skipped.txt").write_text("\n".join(dataset.skipped) + "\n")
    summarize(rows, out)
    return rows


def summarize(rows: list[dict], out: Path) -> list[dict]:
    """Means per method of every numeric column -> summary.csv, summary.md, summary.png."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if k not in ("method", "item", "edit_type", "frames") and all(isinstance(r.get(k, 0.0), (int, float)) for r in rows)]
    table = []
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        entry = {"method": m, "videos": len(mine)}
        for k in keys:
            vals = [r[k] for r in mine if k in r and not (isinstance(r[k], float) and math.isnan(r[k]))]
            entry[k] = float(np.mean(vals)) if vals else float("nan")
        table.append(entry)
    cols = ["method", "videos", *keys]
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(table)
    fmt = lambda v: v if isinstance(v, str) else (f"{v:.4g}" if isinstance(v, float) else str(v))  # noqa: E731
    md = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    md += ["| " + " | ".join(fmt(t.get(c, "")) for c in cols) + " |" for t in table]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.2), squeeze=False)
        for ax, k in zip(axes[0], keys, strict=True):
            ax.bar(range(len(table)), [t[k] for t in table])
            ax.set_xticks(range(len(table)), [t["method"] for t in table], rotation=60, ha="right", fontsize=7)
            ax.set_title(k, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "summary.png", dpi=110)
        plt.close(fig)
    except ImportError:
        pass
    return table
