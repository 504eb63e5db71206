"""Saving and loading the temporal-module (SVDiff memory / baseline) weights on their own.

A folder with ``temporal_config.json`` and ``temporal.safetensors`` (keys ``<site>.<module path>``,
PyTorch layout), independent of the base UNet's weights.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from jaxvid.models.temporal import TemporalConfig, TemporalUNet
from jaxvid.weights.convert import export_torch_state, load_state_into
from jaxvid.weights.errors import WeightFileError
from jaxvid.weights.files import read_weights


def save_temporal(model: TemporalUNet, path: str | Path, *, dtype: np.dtype | None = None) -> Path:
    from safetensors.numpy import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.asdict(model.config)
    (folder / "temporal_config.json").write_text(json.dumps(cfg, indent=2))
    save_file(export_torch_state(model.temporal, dtype), str(folder / "temporal.safetensors"), metadata={"format": "pt"})
    return folder


def read_temporal_config(path: str | Path) -> TemporalConfig:
    f = Path(path) / "temporal_config.json"
    if not f.exists():
        raise WeightFileError(f"{path} has no temporal_config.json (is it a folder written by save_temporal?)")
    d = json.loads(f.read_text())
    d["memory_hw"] = tuple(d.get("memory_hw", (8, 8)))
    return TemporalConfig(**d)


def load_temporal(model: TemporalUNet, path: str | Path) -> TemporalUNet:
    """Fill ``model.temporal`` from a folder written by :func:`save_temporal` (strict)."""
    folder = Path(path)
    cfg = read_temporal_config(folder)
    if cfg != model.config:
        raise WeightFileError(f"{folder} holds {cfg}, but the model was built with {model.config}")
    f = folder / "temporal.safetensors"
    if not f.exists():
        raise WeightFileError(f"{folder} has no temporal.safetensors")
    load_state_into(model.temporal, read_weights(f))
    return model
