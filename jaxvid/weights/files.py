"""Finding and reading weight files of a diffusers/transformers component folder.

Formats: ``*.safetensors`` (read without torch, sharded ``.index.json`` too), diffusers-era Flax
``*.msgpack``, and ``*.bin`` only when torch is importable. Variants (``.fp16.``) are found
automatically when they are the only weights, or chosen with ``variant=``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from jaxvid.weights.errors import WeightFileError

# Order of preference when a folder holds several formats.
_FORMATS = (".safetensors.index.json", ".safetensors", ".msgpack", ".bin.index.json", ".bin")


@dataclass
class TensorSource:
    """Flat ``name -> array`` read from disk. ``layout='torch'``: PyTorch names and layouts
    (dotted keys, OIHW convs, [out,in] linears). ``layout='flax'``: already NNX-shaped arrays
    keyed by the dotted NNX path (diffusers-era Flax msgpack)."""

    tensors: dict[str, np.ndarray]
    layout: Literal["torch", "flax"]
    path: Path


def _variant_of(name: str, fmt: str) -> str | None:
    stem = name[: -len(fmt)]
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    parts = stem.split(".")
    return parts[-1] if len(parts) > 1 else None


def find_weights_file(folder: str | Path, variant: str | None = None) -> Path:
    """The weights file of a component folder, with a readable error when there is none or
    the choice is ambiguous."""
    folder = Path(folder)
    if not folder.is_dir():
        raise WeightFileError(f"model folder not found: {folder}")
    candidates: list[tuple[int, str | None, Path]] = []
    for p in sorted(folder.iterdir()):
        for rank, fmt in enumerate(_FORMATS):
            if p.name.endswith(fmt):
                if fmt in (".safetensors", ".bin") and re.search(r"-\d{5}-of-\d{5}\.", p.name):
                    break  # shard: reached through its index
                candidates.append((rank, _variant_of(p.name, fmt), p))
                break
    if not candidates:
        listing = ", ".join(sorted(p.name for p in folder.iterdir())) or "(empty)"
        raise WeightFileError(
            f"no weights file in {folder} (looked for {', '.join('*' + f for f in _FORMATS)}); it holds: {listing}"
        )
    if variant is not None:
        chosen = [c for c in candidates if c[1] == variant]
        if not chosen:
            have = sorted({c[1] or "(none)" for c in candidates})
            raise WeightFileError(f"no weights of variant {variant!r} in {folder}; variants present: {have}")
    else:
        chosen = [c for c in candidates if c[1] is None]
        if not chosen:
            variants = sorted({c[1] for c in candidates})
            if len(variants) > 1:
                raise WeightFileError(
                    f"{folder} holds only variant weights {variants}; pass variant= to choose one"
                )
            chosen = candidates
    return min(chosen, key=lambda c: c[0])[2]


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        out: dict[str, np.ndarray] = {}
        with safe_open(str(path), framework="numpy") as f:
            bf16 = []
            for k in f.keys():
                if f.get_slice(k).get_dtype() == "BF16":
                    bf16.append(k)  # numpy has no bfloat16: read those through jax below
                else:
                    out[k] = f.get_tensor(k)
        if bf16:
            with safe_open(str(path), framework="flax") as f:
                for k in bf16:
                    out[k] = np.asarray(f.get_tensor(k))
        return out
    except SafetensorError as e:
        raise WeightFileError(f"cannot read {path}: unreadable or truncated safetensors file ({e})") from None


def _read_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise WeightFileError(
            f"{path} is a PyTorch pickle (.bin); reading it needs torch, which is not installed. "
            "Convert it to safetensors, or install torch"
        ) from None
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt pickles
        raise WeightFileError(f"cannot read {path}: {e}") from None
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in sd.items()}


_FLAX_LIST_NAMES = (
    "down_blocks", "up_blocks", "attentions", "resnets", "transformer_blocks", "downsamplers",
    "upsamplers", "to_out", "net", "layers",
)
_FLAX_INDEX = re.compile(r"(?:^|(?<=\.))(" + "|".join(_FLAX_LIST_NAMES) + r")_(\d+)(?=\.|$)")


def _read_msgpack(path: Path) -> dict[str, np.ndarray]:
    from flax import serialization

    try:
        tree = serialization.msgpack_restore(path.read_bytes())
    except Exception as e:
        raise WeightFileError(f"cannot read {path}: not a valid Flax msgpack file ({e})") from None
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            # diffusers' Flax modules named list members ``down_blocks_0``; NNX uses ``down_blocks.0``
            flat[_FLAX_INDEX.sub(r"\1.\2", prefix)] = np.asarray(node)

    walk(tree, "")
    return flat


def _read_index(path: Path, reader) -> dict[str, np.ndarray]:
    try:
        index = json.loads(path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise WeightFileError(f"cannot read shard index {path}: {e}") from None
    out: dict[str, np.ndarray] = {}
    for shard in sorted(set(index.values())):
        shard_path = path.parent / shard
        if not shard_path.exists():
            raise WeightFileError(f"shard {shard} named by {path} is missing")
        out.update(reader(shard_path))
    return out


def read_weights(path: str | Path) -> TensorSource:
    """Read every tensor of a weights file (or shard index) into host memory."""
    path = Path(path)
    if not path.exists():
        raise WeightFileError(f"weights file not found: {path}")
    name = path.name
    if name.endswith(".safetensors.index.json"):
        return TensorSource(_read_index(path, _read_safetensors), "torch", path)
    if name.endswith(".safetensors"):
        return TensorSource(_read_safetensors(path), "torch", path)
    if name.endswith(".msgpack"):
        return TensorSource(_read_msgpack(path), "flax", path)
    if name.endswith(".bin.index.json"):
        return TensorSource(_read_index(path, _read_bin), "torch", path)
    if name.endswith(".bin"):
        return TensorSource(_read_bin(path), "torch", path)
    raise WeightFileError(f"unknown weights format: {path}")
