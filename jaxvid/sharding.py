"""Device mesh and logical-axis sharding rules, declared once for the whole project.

Mesh axes (any may be 1): ``data`` (batch split, parameters replicated), ``fsdp`` (batch split
*and* parameters/optimizer state split, gathered by XLA where used), ``tensor`` (feature
dimensions of parameters split). Parameters get *logical* axes from their role, the rules map
logical axes to mesh axes, and a dimension that does not divide evenly stays replicated, so
every model shape works on every mesh:

=========  ==========================================================  ================
logical    where                                                       default mesh axis
=========  ==========================================================  ================
batch      leading dim of every batch / activation / temporal state    (data, fsdp)
embed      input features of dense kernels, input channels of convs   fsdp
mlp        output features of dense kernels, output channels of convs tensor
vocab      rows of embedding tables                                    tensor
(none)     biases, norm scales, scalars                                replicated
=========  ==========================================================  ================

Everything is SPMD through ``jax.jit`` with these shardings (no ``pmap``); multi-host runs call
:func:`initialize_distributed` first and feed each process its own data shard.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
)


def initialize_distributed() -> bool:
    """Join a multi-process run when the environment describes one (``JAX_COORDINATOR_ADDRESS``
    with ``JAX_NUM_PROCESSES``/``JAX_PROCESS_ID``, or a SLURM / Open MPI job of several tasks,
    which ``jax.distributed.initialize`` reads itself); returns whether it did."""
    multi = ("JAX_COORDINATOR_ADDRESS" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
             or int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1")) > 1)
    if multi:
        jax.distributed.initialize()
    return multi


def make_mesh(shape: dict[str, int] | Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp, tensor)`` mesh. ``shape`` gives each axis' size; one ``-1`` takes the
    remaining devices (``{"data": -1}`` = pure data parallelism over all devices)."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = [int(shape.get(a, 1)) for a in MESH_AXES] if isinstance(shape, dict) else [int(s) for s in shape]
    if len(sizes) != 3 or sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh shape must give (data, fsdp, tensor) sizes >= 1 (one may be -1), got {shape}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices do not divide into a mesh of {shape}")
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(f"mesh {dict(zip(MESH_AXES, sizes, strict=True))} needs {int(np.prod(sizes))} devices, "
                         f"{len(devices)} available")
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)


def param_logical_axes(path: Sequence[Any], ndim: int) -> tuple[str | None, ...]:
    """Logical axes of a parameter (or of an optimizer-state leaf shaped like one) from its
    leaf name and rank."""
    leaf = str(getattr(path[-1], "key", path[-1])) if path else ""
    if leaf == "kernel" and ndim == 2:
        return ("embed", "mlp")
    if leaf == "kernel" and ndim == 4:
        return (None, None, "embed", "mlp")
    if leaf == "embedding" and ndim == 2:
        return ("vocab", "embed")
    if ndim == 2:  # e.g. learned memory cells [cells, width]
        return (None, "embed")
    return (None,) * ndim


def spec_for(shape: Sequence[int], logical: Sequence[str | None], mesh: Mesh,
             rules: Iterable[tuple[str, Any]] = DEFAULT_RULES) -> PartitionSpec:
    """PartitionSpec for ``shape`` with the given logical axes: each dimension goes to its
    rule's mesh axes when it divides evenly (and those mesh axes are still unused), else stays
    replicated."""
    rule = dict(rules)
    used: set[str] = set()
    spec = []
    for dim, name in zip(shape, logical, strict=True):
        axes = rule.get(name) if name else None
        axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
        axes = tuple(a for a in axes if mesh.shape[a] > 1 and a not in used)
        size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        if axes and dim % size == 0:
            spec.append(axes if len(axes) > 1 else axes[0])
            used.update(axes)
        else:
            spec.append(None)
    return PartitionSpec(*spec)


def param_shardings(tree: Any, mesh: Mesh, rules: Iterable[tuple[str, Any]] = DEFAULT_RULES) -> Any:
    """NamedShardings for a pytree of (abstract) parameters or optimizer state."""
    rules = tuple(rules)

    def one(path, leaf):
        shape = tuple(getattr(leaf, "shape", ()))
        return NamedSharding(mesh, spec_for(shape, param_logical_axes(path, len(shape)), mesh, rules))

    return jax.tree_util.tree_map_with_path(one, tree)


def batch_sharding(mesh: Mesh, ndim: int, rules: Iterable[tuple[str, Any]] = DEFAULT_RULES,
                   batch: int | None = None) -> NamedSharding:
    """Sharding of an array whose leading dimension is the batch (``batch`` checks divisibility)."""
    shape = (batch if batch is not None else int(np.prod([mesh.shape[a] for a in MESH_AXES])),) + (1,) * (ndim - 1)
    return NamedSharding(mesh, spec_for(shape, ("batch",) + (None,) * (ndim - 1), mesh, rules))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def placer(mesh: Mesh, rules: Iterable[tuple[str, Any]] = DEFAULT_RULES):
    """``place(path, host_array)`` for the weight loaders: each parameter goes straight to its
    shards on the mesh (each device receives only its slice; no full copy on one device)."""
    rules = tuple(rules)

    def place(path: str, array: np.ndarray) -> jax.Array:
        spec = spec_for(array.shape, param_logical_axes(path.split("."), array.ndim), mesh, rules)
        sharding = NamedSharding(mesh, spec)
        return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])

    return place
