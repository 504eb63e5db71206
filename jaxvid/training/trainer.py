"""The SVDiff train state and its sharded, jitted init and step.

Only the temporal modules train; the base UNet, VAE and text encoder are frozen arrays placed
once with their shardings. The trainable parameters and optimizer state are created already
sharded (``jax.eval_shape`` of the init, then ``jax.jit(init, out_shardings=...)``), and the step
is one ``jax.jit`` with in/out shardings and the state donated: SPMD over the mesh, no pmap.
A step whose loss or gradient is not finite leaves the state unchanged and reports it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from jax.sharding import Mesh

from jaxvid.models.build import HostRngs
from jaxvid.models.temporal import TemporalConfig, make_temporal_modules
from jaxvid.sharding import batch_sharding, param_shardings, replicated
from jaxvid.training.objective import Graphs, ObjectiveConfig, loss_and_grads
from jaxvid.training.optim import OptimConfig, learning_rate, make_optimizer

TRACES = {"step": 0}


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: steps taken
    params: Any  # the temporal modules' parameters (nested dict of arrays)
    opt_state: Any
    rng: jax.Array  # uint32 key data of the run's base key (each step folds in its index)


class Trainer:
    """``state = trainer.init(seed)``; ``state, metrics = trainer.step(state, batch)``."""

    def __init__(self, unet, vae, text_encoder, tokenizer, schedule, *, temporal: TemporalConfig,
                 objective: ObjectiveConfig, optim: OptimConfig, total_steps: int, mesh: Mesh,
                 param_dtype=jnp.float32):
        from jaxvid.text import tokenize

        self.mesh, self.schedule, self.objective = mesh, schedule, objective
        self.tx = make_optimizer(optim, total_steps)
        self.learning_rate = learning_rate(optim, total_steps)
        compute = unet.dtype

        def modules(rngs):
            return make_temporal_modules(unet, temporal, rngs=rngs, dtype=compute, param_dtype=param_dtype)

        temporal_graph = nnx.graphdef(nnx.eval_shape(lambda: modules(HostRngs(0))))
        unet_graph, unet_state = nnx.split(unet)
        vae_graph, vae_state = nnx.split(vae)
        text_graph, text_state = nnx.split(text_encoder)
        self.graphs = Graphs(unet_graph, temporal_graph, temporal, vae_graph, text_graph)
        frozen = (unet_state.to_pure_dict(), vae_state.to_pure_dict(), text_state.to_pure_dict())
        self.frozen_shardings = param_shardings(frozen, mesh)
        self.frozen = jax.device_put(frozen, self.frozen_shardings)  # no-op for arrays loaded in place
        self.uncond_ids = jnp.asarray(tokenize(tokenizer, "", max_length=text_encoder.config.max_position_embeddings)[0])

        def init(key_data: jax.Array) -> TrainState:
            params = nnx.state(modules(HostRngs(jax.random.wrap_key_data(key_data)))).to_pure_dict()
            return TrainState(jnp.int32(0), params, self.tx.init(params), key_data)

        key_data = jax.random.key_data(jax.random.key(0))
        abstract = jax.eval_shape(init, key_data)
        rep = replicated(mesh)
        self.state_shardings = TrainState(rep, param_shardings(abstract.params, mesh),
                                          param_shardings(abstract.opt_state, mesh), rep)
        self._init = jax.jit(init, out_shardings=self.state_shardings)
        self._step = jax.jit(self._step_fn, in_shardings=(self.state_shardings, self.frozen_shardings,
                                                          self.batch_shardings()),
                             out_shardings=(self.state_shardings, rep), donate_argnums=(0,))

    def batch_shardings(self) -> dict:
        return {"video": batch_sharding(self.mesh, 5), "ids": batch_sharding(self.mesh, 2)}

    def init(self, seed: int) -> TrainState:
        return self._init(jax.random.key_data(jax.random.key(seed)))

    def abstract_state(self) -> TrainState:
        """Shapes, dtypes and shardings of the state (what a checkpoint restores into)."""
        shapes = jax.eval_shape(self._init, jax.random.key_data(jax.random.key(0)))
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), shapes,
                            self.state_shardings)

    def _step_fn(self, state: TrainState, frozen, batch: dict) -> tuple[TrainState, dict]:
        TRACES["step"] += 1  # counts compilations
        key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        loss, grads, aux = loss_and_grads(state.params, frozen, batch, key, graphs=self.graphs,
                                          schedule=self.schedule, uncond_ids=self.uncond_ids, cfg=self.objective)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
        new = TrainState(state.step + 1, optax.apply_updates(state.params, updates), opt_state, state.rng)
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, state)  # a bad step changes nothing
        metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": self.learning_rate(state.step),
                   "finite": finite, "state_rms": aux["state_rms"]}
        return new, metrics

    def step(self, state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        """One optimizer step on a process-local batch (numpy); it is assembled into global
        arrays sharded over the mesh (each process contributes its own rows)."""
        shardings = self.batch_shardings()
        global_batch = {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(batch[k]))
                        for k in ("video", "ids")}
        return self._step(state, self.frozen, global_batch)
