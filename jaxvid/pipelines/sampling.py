"""The shared LCM sampling core: guided noise prediction and a ``lax.scan`` over timesteps.

Everything here is a pure function of arrays, meant to run inside ``jax.jit``; the timesteps
are an array argument, so prompts, seeds, guidance and the schedule's values never recompile,
only shapes (batch, size, number of steps) do.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxvid.models.embeddings import guidance_scale_embedding
from jaxvid.models.unet import UNet2DConditionModel
from jaxvid.schedulers.lcm import lcm_step
from jaxvid.schedulers.schedule import NoiseSchedule

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


def guided_eps(
    unet: UNet2DConditionModel,
    x: jax.Array,
    t: jax.Array,
    context: jax.Array,
    uncond: jax.Array | None,
    guidance_scale: jax.Array | float,
    timestep_cond: jax.Array | None = None,
) -> jax.Array:
    """Classifier-free guidance ``e_u + g (e_c - e_u)`` in one batched UNet call; ``uncond=None``
    skips guidance (distilled LCMs, or g = 1)."""
    if uncond is None:
        return unet(x, t, context, timestep_cond=timestep_cond)
    both = unet(jnp.concatenate([x, x]), t, jnp.concatenate([context, uncond]), timestep_cond=timestep_cond)
    e_c, e_u = jnp.split(both, 2)
    return e_u + jnp.asarray(guidance_scale, e_c.dtype) * (e_c - e_u)


def step_table(timesteps: np.ndarray) -> dict[str, jax.Array]:
    """Per-step scan inputs: current t, next t, is-last flag (arrays, so no recompiles)."""
    ts = np.asarray(timesteps, np.int32)
    nxt = np.concatenate([ts[1:], ts[-1:]])
    last = np.arange(len(ts)) == len(ts) - 1
    return {"t": jnp.asarray(ts), "prev_t": jnp.asarray(nxt), "is_last": jnp.asarray(last)}


def lcm_loop(
    eps_fn: EpsFn, schedule: NoiseSchedule, latents: jax.Array, steps: dict[str, jax.Array], key: jax.Array
) -> jax.Array:
    """Run the LCM chain from ``latents`` (noised to ``steps['t'][0]``); returns the final
    denoised latents. Step ``i`` re-noises with ``fold_in(key, i)``."""

    def body(x, inp):
        i, t, prev_t, is_last = inp
        eps = eps_fn(x, t)
        noise = jax.random.normal(jax.random.fold_in(key, i), x.shape, x.dtype)
        x, denoised = lcm_step(schedule, eps, t, x, prev_t, noise, is_last=is_last)
        return x, denoised

    n = steps["t"].shape[0]
    _, denoised = jax.lax.scan(body, latents, (jnp.arange(n), steps["t"], steps["prev_t"], steps["is_last"]))
    return denoised[-1]


def lcm_guidance_cond(unet: UNet2DConditionModel, guidance_scale: float, batch: int) -> jax.Array | None:
    """Fully distilled LCMs take ``w = guidance - 1`` as an embedding instead of doing CFG."""
    dim = unet.config.time_cond_proj_dim
    if dim is None:
        return None
    return jnp.broadcast_to(guidance_scale_embedding(jnp.asarray([guidance_scale - 1.0]), dim), (batch, dim))
