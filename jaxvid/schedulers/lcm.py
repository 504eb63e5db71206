"""Latent Consistency Model sampling, matching diffusers' ``LCMScheduler`` exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvid.schedulers.schedule import NoiseSchedule, _bcast, predict_x0_eps


def lcm_timesteps(
    num_inference_steps: int,
    *,
    original_inference_steps: int = 50,
    strength: float = 1.0,
    num_train_timesteps: int = 1000,
) -> np.ndarray:
    """``LCMScheduler.set_timesteps``: ``num_inference_steps`` evenly spaced (by index) picks from
    the ``original_inference_steps``-point distillation schedule (e.g. 4 -> [999, 759, 499, 259])."""
    T = num_train_timesteps
    if original_inference_steps > T:
        raise ValueError(f"original_inference_steps {original_inference_steps} > num_train_timesteps {T}")
    if not 0 < num_inference_steps <= original_inference_steps:
        raise ValueError(
            f"num_inference_steps must be in 1..original_inference_steps={original_inference_steps}, "
            f"got {num_inference_steps}"
        )
    k = T // original_inference_steps
    origin = np.arange(1, int(original_inference_steps * strength) + 1) * k - 1
    if len(origin) // num_inference_steps < 1:
        raise ValueError(
            f"original_inference_steps x strength = {original_inference_steps} x {strength} gives fewer than "
            f"{num_inference_steps} timesteps; lower num_inference_steps or raise strength"
        )
    origin = origin[::-1].copy()
    idx = np.floor(np.linspace(0, len(origin), num=num_inference_steps, endpoint=False)).astype(np.int64)
    return origin[idx]


def lcm_scalings(t: jax.Array | int, timestep_scaling: float = 10.0) -> tuple[jax.Array, jax.Array]:
    """Boundary-condition scalings ``(c_skip, c_out)`` of the consistency function."""
    sigma_data = 0.5
    st = jnp.asarray(t, jnp.float32) * timestep_scaling
    return sigma_data**2 / (st**2 + sigma_data**2), st / jnp.sqrt(st**2 + sigma_data**2)


def lcm_step(
    s: NoiseSchedule,
    model_output: jax.Array,
    t: jax.Array | int,
    sample: jax.Array,
    prev_t: jax.Array | int,
    noise: jax.Array,
    *,
    is_last: bool | jax.Array,
    timestep_scaling: float = 10.0,
) -> tuple[jax.Array, jax.Array]:
    """One LCM step; returns ``(prev_sample, denoised)``. ``denoised = c_out x0 + c_skip x_t``;
    unless this is the last step, ``prev_sample`` re-noises it to ``prev_t`` with ``noise``.
    ``is_last`` may be traced (inside ``lax`` loops)."""
    x0, _ = predict_x0_eps(s, model_output, t, sample)
    c_skip, c_out = lcm_scalings(t, timestep_scaling)
    denoised = _bcast(c_out, sample) * x0 + _bcast(c_skip, sample) * sample
    a_prev = _bcast(s.alpha(prev_t), sample)
    renoised = jnp.sqrt(a_prev) * denoised + jnp.sqrt(1 - a_prev) * noise
    return jnp.where(is_last, denoised, renoised), denoised


def lcm_invert(eps_fn, s: NoiseSchedule, z0: jax.Array, timesteps: jax.Array) -> jax.Array:
    """Deterministic DDIM-style inversion of a clean latent ``z0`` up the LCM ``timesteps``
    (given descending, as sampled) to the first of them: SVDiff's "LCM Inversion". Each step
    predicts ``eps_fn(x, t_to)`` (the model's epsilon at the *next* timestep, the usual DDIM
    inversion approximation) and moves ``x`` from ``t_from`` to ``t_to`` along it. Shared by the
    streaming editor and the training objective that trains on what the stream sees."""
    up = jnp.asarray(timesteps)[::-1]
    prev = jnp.concatenate([jnp.array([-1], up.dtype), up[:-1]])  # -1: z0 itself (the final alpha)

    def step(x, inp):
        t_to, t_from = inp
        eps = eps_fn(x, t_to).astype(jnp.float32)
        a_from, a_to = s.alpha(t_from), s.alpha(t_to)
        x0 = (x - jnp.sqrt(1 - a_from) * eps) / jnp.sqrt(a_from)
        return jnp.sqrt(a_to) * x0 + jnp.sqrt(1 - a_to) * eps, None

    return jax.lax.scan(step, z0, (up, prev))[0]
