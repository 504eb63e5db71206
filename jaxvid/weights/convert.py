"""Mechanical conversion between NNX parameters and PyTorch state dicts.

NNX path ``down_blocks.0.resnets.1.conv1.kernel`` <-> torch key ``down_blocks.0.resnets.1.conv1.weight``:
``kernel``/``scale``/``embedding`` become ``weight``; linear kernels are transposed; conv kernels go
from OIHW to HWIO. Every other parameter keeps its name and layout. Strict: any missing, unmapped
or mis-shaped key raises :class:`WeightMismatchError` naming them.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

import jax
import numpy as np
from flax import nnx

from jaxvid.weights.errors import WeightMismatchError
from jaxvid.weights.files import TensorSource

M = TypeVar("M", bound=nnx.Module)

_LEAF_TO_TORCH = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


def param_paths(model: nnx.Module) -> dict[str, nnx.Variable]:
    """Dotted NNX path -> parameter variable, for every ``nnx.Param`` of the model."""
    return {".".join(str(p) for p in path): var for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def torch_key(nnx_path: str) -> str:
    head, _, leaf = nnx_path.rpartition(".")
    leaf = _LEAF_TO_TORCH.get(leaf, leaf)
    return f"{head}.{leaf}" if head else leaf


def _leaf(nnx_path: str) -> str:
    return nnx_path.rpartition(".")[2]


def from_torch_layout(nnx_path: str, array: np.ndarray) -> np.ndarray:
    if _leaf(nnx_path) == "kernel":
        if array.ndim == 2:
            return array.T
        if array.ndim == 4:
            return array.transpose(2, 3, 1, 0)
    return array


def torch_shape(nnx_path: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The PyTorch shape of a parameter of NNX shape ``shape``."""
    if _leaf(nnx_path) == "kernel" and len(shape) == 2:
        return (shape[1], shape[0])
    if _leaf(nnx_path) == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return tuple(shape)


def to_torch_layout(nnx_path: str, array: np.ndarray) -> np.ndarray:
    if _leaf(nnx_path) == "kernel":
        if array.ndim == 2:
            return array.T
        if array.ndim == 4:
            return array.transpose(3, 2, 0, 1)
    return array


def _aligned_copy(array: np.ndarray, dtype) -> np.ndarray:
    """``array`` in ``dtype``, contiguous, in a fresh 64-byte-aligned buffer: layout change and
    cast in one pass, and a buffer jax's CPU client uses in place (``device_put`` aliases it
    instead of copying it again; on an accelerator it is an ordinary host array)."""
    dtype = np.dtype(dtype)
    buf = np.empty(array.size * dtype.itemsize + 64, np.uint8)
    offset = -buf.ctypes.data % 64
    out = buf[offset : offset + array.size * dtype.itemsize].view(dtype).reshape(array.shape)
    np.copyto(out, array, casting="unsafe")
    return out


def load_state_into(
    model: M,
    source: TensorSource,
    *,
    rename: Callable[[str], str] | None = None,
    ignore: Iterable[str] = (),
    place: Callable[[str, np.ndarray], jax.Array] | None = None,
) -> M:
    """Fill ``model`` (usually abstract, from ``nnx.eval_shape``) with the tensors of ``source``.

    ``rename`` maps file keys to the model's torch-style keys (e.g. deprecated VAE attention
    names); keys whose name ends with one of ``ignore`` are non-parameter buffers and are skipped.
    Arrays are cast to each parameter's own ``param_dtype``; ``place(path, array)`` puts each on
    its devices (e.g. straight into its shards over a mesh, see :func:`jaxvid.sharding.placer`),
    else it goes to the default device.
    """
    ignore = tuple(ignore)
    tensors = {
        (rename(k) if rename else k): v for k, v in source.tensors.items() if not (ignore and k.endswith(ignore))
    }
    params = param_paths(model)
    if source.layout == "torch":
        wanted = {torch_key(p): p for p in params}
    else:
        wanted = {p: p for p in params}
    missing = sorted(k for k in wanted if k not in tensors)
    unexpected = sorted(k for k in tensors if k not in wanted)
    misshaped = []
    jobs: dict[str, np.ndarray] = {}  # nnx path -> the file's array in NNX layout (a view)
    for key, path in wanted.items():
        if key not in tensors:
            continue
        arr = from_torch_layout(path, tensors[key]) if source.layout == "torch" else tensors[key]
        if tuple(arr.shape) != tuple(params[path].shape):
            want = torch_shape(path, params[path].shape) if source.layout == "torch" else tuple(params[path].shape)
            misshaped.append((key, tuple(tensors[key].shape), want))
            continue
        jobs[path] = arr
    if missing or unexpected or misshaped:
        raise WeightMismatchError(str(source.path), missing, unexpected, misshaped)
    if place is not None:
        new_values = {p: place(p, np.asarray(a).astype(params[p].dtype, copy=False)) for p, a in jobs.items()}
    else:
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # numpy casts release the GIL
            host = list(pool.map(lambda p: _aligned_copy(jobs[p], params[p].dtype), jobs))
        # one call for all, and no second copy: the CPU client adopts 64-byte-aligned buffers
        new_values = dict(zip(jobs, jax.device_put(host), strict=True))
    for path, var in params.items():
        var.set_value(new_values[path])
    return model


def export_torch_state(model: nnx.Module, dtype: np.dtype | None = None) -> dict[str, np.ndarray]:
    """The model's parameters as a torch-layout state dict (numpy), e.g. for safetensors."""
    out = {}
    for path, var in param_paths(model).items():
        arr = np.asarray(var.get_value())
        if dtype is not None:
            arr = arr.astype(dtype)
        out[torch_key(path)] = np.ascontiguousarray(to_torch_layout(path, arr))
    return out
