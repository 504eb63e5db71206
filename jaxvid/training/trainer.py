"""The train state and its sharded, jitted init and step, for any :class:`Task`.

The task's trainable parameters and the optimizer state are created already sharded
(``jax.eval_shape`` of the init, then ``jax.jit(init, out_shardings=...)``); its frozen arrays
are placed once with their shardings; the step is one ``jax.jit`` with in/out shardings and the
state donated: SPMD over the mesh, no pmap. A step whose loss or gradient is not finite leaves
the state unchanged and reports it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from jaxvid.sharding import batch_sharding, param_shardings, replicated
from jaxvid.training.optim import OptimConfig, learning_rate, make_optimizer
from jaxvid.training.tasks.base import Task

TRACES = {"step": 0}


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: steps taken
    params: Any  # the task's trainable parameters (nested dict of arrays)
    opt_state: Any
    rng: jax.Array  # uint32 key data of the run's base key (each step folds in its index)


class Trainer:
    """``state = trainer.init(seed)``; ``state, metrics = trainer.step(state, batch)``."""

    def __init__(self, task: Task, *, optim: OptimConfig, total_steps: int, mesh: Mesh):
        self.task, self.mesh = task, mesh
        self.tx = make_optimizer(optim, total_steps)
        self.learning_rate = learning_rate(optim, total_steps)
        self.frozen_shardings = param_shardings(task.frozen, mesh)
        # no-op for arrays loaded in place; an abstract model (ShapeDtypeStruct leaves) stays abstract,
        # so its step can be lowered and analysed without any weights (see :meth:`lower`)
        self.frozen = jax.tree.map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s) if isinstance(a, jax.ShapeDtypeStruct)
            else jax.device_put(a, s), task.frozen, self.frozen_shardings)

        def init(key_data: jax.Array) -> TrainState:
            params = task.init_params(key_data)
            return TrainState(jnp.int32(0), params, self.tx.init(params), key_data)

        abstract = jax.eval_shape(init, jax.random.key_data(jax.random.key(0)))
        rep = replicated(mesh)
        self.state_shardings = TrainState(rep, param_shardings(abstract.params, mesh),
                                          param_shardings(abstract.opt_state, mesh), rep)
        self._init = jax.jit(init, out_shardings=self.state_shardings)
        self._step = jax.jit(self._step_fn, in_shardings=(self.state_shardings, self.frozen_shardings,
                                                          self.batch_shardings()),
                             out_shardings=(self.state_shardings, rep), donate_argnums=(0,))

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """What a batch holds: ``video`` and ``ids``, and whatever else the task reads (an edit
        pair's ``edited`` video)."""
        return getattr(self.task, "batch_keys", ("video", "ids"))

    def batch_shardings(self) -> dict:
        return {k: batch_sharding(self.mesh, 2 if k == "ids" else 5) for k in self.batch_keys}

    def init(self, seed: int) -> TrainState:
        return self._init(jax.random.key_data(jax.random.key(seed)))

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state (what a checkpoint restores into)."""
        shapes = jax.eval_shape(self._init, jax.random.key_data(jax.random.key(0)))
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes,
                            self.state_shardings)

    def abstract_inputs(self, batch_size: int, frames: int, height: int, width: int) -> tuple:
        """``(state, frozen, batch)`` of the train step as shapes (the frozen weights as they are)."""
        s = self.batch_shardings()
        ids = getattr(self.task, "uncond_ids", jnp.zeros(77)).shape[-1]  # the text encoder's window
        batch = {k: jax.ShapeDtypeStruct((batch_size, ids), jnp.int32, sharding=s[k]) if k == "ids" else
                 jax.ShapeDtypeStruct((batch_size, frames, height, width, 3), jnp.uint8, sharding=s[k]) for k in s}
        return self.abstract_state(), self.frozen, batch

    def lower(self, batch_size: int, frames: int, height: int, width: int):
        """The train step lowered for abstract inputs (nothing allocated, nothing run); after
        ``.compile()``, XLA's memory analysis. (FLOPs: ``jaxvid.flops.count_flops`` of
        ``step_fn`` on :meth:`abstract_inputs` — XLA's cost analysis counts a scan body once.)"""
        return self._step.lower(*self.abstract_inputs(batch_size, frames, height, width))

    @property
    def step_fn(self):
        """The pure train step ``(state, frozen, batch) -> (state, metrics)`` (not jitted)."""
        return self._step_fn

    def _step_fn(self, state: TrainState, frozen, batch: dict) -> tuple[TrainState, dict]:
        TRACES["step"] += 1  # counts compilations
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        loss, grads, aux = self.task.loss_and_grads(state.params, frozen, batch, key)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        new = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state, state.rng)
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)  # a bad step changes nothing
        metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": self.learning_rate(state.step),
                   "finite": finite, **aux}
        return new, metrics

    def step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        """One optimizer step on a process-local batch (numpy); it is assembled into global
        arrays sharded over the mesh (each process contributes its own rows)."""
        return self._step(state, self.frozen, self.global_batch(batch))

    def global_batch(self, batch: dict) -> dict:
        """A process-local numpy batch as global arrays sharded over the mesh."""
        shardings = self.batch_shardings()
        missing = [k for k in shardings if k not in batch]
        if missing:
            raise ValueError(f"the {self.task.name} task needs {missing} in every batch (e.g. data.source="
                             "'toyworld_edits' for an edit objective)")
        return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(batch[k])) for k in shardings}

    def host_params(self, state: TrainState) -> Any:
        """The trainable parameters as host arrays (gathered across processes if needed)."""
        from jax.experimental import multihost_utils

        params = state.params if jax.process_count() == 1 else multihost_utils.process_allgather(state.params)
        return jax.device_get(params)
