"""Fusing LoRA files (LCM-LoRA and friends) into NNX models.

Key styles read:

* diffusers/peft: ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` (rank and alpha from the
  ``lora_adapter_metadata`` header diffusers writes, else alpha = rank), and the older
  ``<module>.lora.down/up.weight`` and ``processor.to_q_lora.down/up.weight`` forms;
* kohya: ``lora_unet_<module_with_underscores>.lora_down/lora_up.weight`` plus ``.alpha``
  (the format of the released LCM-LoRA SD1.5 file); ``lora_te_`` for the text encoder.

Fusion is ``W += scale * alpha / rank * up @ down`` in PyTorch layout, then converted to NNX
layout. Every key must map onto a parameter of the model(s) given, or the load fails.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxvid.weights.convert import from_torch_layout, param_paths, torch_shape
from jaxvid.weights.errors import WeightFileError, WeightMismatchError
from jaxvid.weights.files import read_weights

_PEFT = re.compile(r"^(?P<mod>.+)\.lora_(?P<kind>A|B)(?:\.[A-Za-z_]\w*)?\.weight$")
_OLD = re.compile(r"^(?P<mod>.+)\.lora\.(?P<kind>down|up)\.weight$")
_KOHYA = re.compile(r"^(?P<mod>lora_(?:unet|te\d?)_[A-Za-z0-9_]+)\.(?P<kind>lora_down\.weight|lora_up\.weight|alpha)$")
_PROCESSOR = re.compile(r"\.processor\.(to_q|to_k|to_v|to_out)_lora\.")


def _lora_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.safetensors"))
        if len(files) != 1:
            raise WeightFileError(f"expected one LoRA .safetensors file in {p}, found {[f.name for f in files]}")
        return files[0]
    if not p.exists():
        raise WeightFileError(f"LoRA file not found: {p}")
    return p


def _metadata(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        raw = (f.metadata() or {}).get("lora_adapter_metadata")
    return json.loads(raw) if raw else {}


def _peft_alpha(meta: dict, prefix: str, module: str, rank: int) -> float:
    """alpha for a module from peft's saved LoraConfig (patterns match name suffixes)."""
    alpha = meta.get(f"{prefix}.lora_alpha", rank)
    r = meta.get(f"{prefix}.r", rank)
    for pat, a in (meta.get(f"{prefix}.alpha_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pat})$", module):
            alpha = a
    for pat, rr in (meta.get(f"{prefix}.rank_pattern") or {}).items():
        if re.match(rf"(.*\.)?({pat})$", module):
            r = rr
    if r != rank:
        raise WeightFileError(f"LoRA metadata says rank {r} for {module} but the tensors have rank {rank}")
    return float(alpha)


def _module_index(model: nnx.Module) -> dict[str, tuple[str, nnx.Variable]]:
    """torch module path -> (nnx kernel path, variable), for every kernel of the model."""
    out = {}
    for path, var in param_paths(model).items():
        if path.endswith(".kernel"):
            out[path[: -len(".kernel")]] = (path, var)
    return out


def _group(tensors: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """LoRA module name (in its file's convention) -> {'down', 'up', 'alpha'?}."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    unknown = []
    for key, v in tensors.items():
        k = _PROCESSOR.sub(lambda m: f".{m.group(1) if m.group(1) != 'to_out' else 'to_out.0'}.lora.", key)
        for rx, kinds in ((_KOHYA, {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}),
                          (_PEFT, {"A": "down", "B": "up"}), (_OLD, {"down": "down", "up": "up"})):
            m = rx.match(k)
            if m:
                groups.setdefault(m["mod"], {})[kinds[m["kind"]]] = v
                break
        else:
            unknown.append(key)
    if unknown:
        raise WeightMismatchError("the LoRA file (unrecognised key style: DoRA/LoHa/LoKr are not supported)",
                                  unexpected=unknown)
    incomplete = [m for m, g in groups.items() if "down" not in g or "up" not in g]
    if incomplete:
        raise WeightMismatchError("the LoRA file (down/up pair incomplete)", missing=incomplete)
    return groups


def load_lora(
    unet: nnx.Module,
    path: str | Path,
    scale: float = 1.0,
    *,
    text_encoder: nnx.Module | None = None,
):
    """Fuse a LoRA file into ``unet`` (and ``text_encoder`` when the file has text-encoder
    layers) in place; returns ``unet``. ``scale`` multiplies the LoRA update (diffusers' ``lora_scale``)."""
    file = _lora_file(path)
    tensors = read_weights(file).tensors
    if not tensors:
        raise WeightFileError(f"LoRA file {file} holds no tensors")
    meta = _metadata(file)
    targets = {"unet": _module_index(unet)}
    if text_encoder is not None:
        targets["text_encoder"] = _module_index(text_encoder)
    kohya_names = {
        name: {m.replace(".", "_"): m for m in idx} for name, idx in targets.items()
    }
    unmapped, misshaped, te_keys = [], [], []
    updates: list[tuple[nnx.Variable, str, np.ndarray]] = []
    for mod, g in _group(tensors).items():
        if mod.startswith("lora_"):
            which = "unet" if mod.startswith("lora_unet_") else "text_encoder"
            body = mod.split("_", 2)[2]
            if which == "text_encoder" and text_encoder is None:
                te_keys.append(mod)
                continue
            target = kohya_names[which].get(body if which == "unet" else f"text_model_{body.removeprefix('text_model_')}")
            peft_prefix = None
        else:
            which, _, body = mod.partition(".")
            if which not in ("unet", "text_encoder"):
                which, body = "unet", mod  # bare module names: a UNet-only file
            if which == "text_encoder" and text_encoder is None:
                te_keys.append(mod)
                continue
            target = body if body in targets[which] else (f"text_model.{body}" if which == "text_encoder" else None)
            peft_prefix = which
        if target is None or target not in targets[which]:
            unmapped.append(mod)
            continue
        kpath, var = targets[which][target]
        down, up = g["down"].astype(np.float32), g["up"].astype(np.float32)
        rank = down.shape[0]
        if "alpha" in g:
            alpha = float(np.asarray(g["alpha"]).reshape(()))
        elif peft_prefix is not None and meta:
            alpha = _peft_alpha(meta, peft_prefix, target, rank)
        else:
            alpha = float(rank)
        tshape = torch_shape(kpath, var.shape)
        delta = up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)
        if delta.size != int(np.prod(tshape)) or delta.shape[0] != tshape[0]:
            misshaped.append((mod, tuple(delta.shape), tshape))
            continue
        delta = from_torch_layout(kpath, delta.reshape(tshape)) * (scale * alpha / rank)
        updates.append((var, kpath, delta))
    if te_keys:
        raise WeightMismatchError(
            f"{file} (it has text-encoder layers; pass text_encoder= to fuse them)", unexpected=te_keys
        )
    if unmapped or misshaped:
        raise WeightMismatchError(str(file), unexpected=unmapped, misshaped=misshaped)
    # Fused on the host in float32 and sent back in one transfer (device-side adds would compile
    # one small program per weight shape, a second per load of the built-in model). Each weight
    # goes back placed as it was: committed to its sharding (a UNet over a mesh) or uncommitted —
    # a committed weight among uncommitted ones makes jit outputs committed, so a loop feeding
    # them back would compile its step twice.
    olds = [var.get_value() for var, _, _ in updates]
    fused = [(np.asarray(w, np.float32) + delta).astype(w.dtype) for w, (_, _, delta) in zip(olds, updates, strict=True)]
    placed = jax.device_put(fused, [w.sharding if w.committed else None for w in olds])
    for (var, _, _), value in zip(updates, placed, strict=True):
        var.set_value(value)
    return unet
