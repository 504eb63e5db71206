"""Training metrics to ``metrics.jsonl`` (one JSON object per logged step, appended across
restarts) and to TensorBoard event files (``tensorboard/``), plus images (sample strips)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flatten arrays into named scalars (``state_rms`` [sites] -> ``state_rms/site_00``...)."""
    out = {}
    for k, v in metrics.items():
        a = np.asarray(v)
        if a.ndim == 0:
            out[k] = float(a)
        else:
            out.update({f"{k}/site_{i:02d}": float(x) for i, x in enumerate(a.ravel())})
    return out


class MetricLogger:
    def __init__(self, workdir: str | Path, *, enabled: bool = True):
        from tensorboardX import SummaryWriter

        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._tb = SummaryWriter(str(Path(workdir) / "tensorboard")) if enabled else None
        self._t0 = time.time()

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        scalars = _scalars(metrics)
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, "time": time.time() - self._t0, **scalars}) + "\n")
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        return scalars

    def image(self, step: int, name: str, image: np.ndarray) -> None:
        if self.enabled:
            self._tb.add_image(name, np.asarray(image), step, dataformats="HWC")
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(workdir: str | Path) -> list[dict[str, float]]:
    """The logged rows of a run (what ``metrics.jsonl`` holds)."""
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
