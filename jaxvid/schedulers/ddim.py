"""DDIM sampling and inversion steps, matching diffusers' ``DDIMScheduler``/``DDIMInverseScheduler``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvid.schedulers.schedule import NoiseSchedule, _bcast, predict_x0_eps


def ddim_timesteps(
    num_inference_steps: int, *, num_train_timesteps: int = 1000, spacing: str = "leading", steps_offset: int = 1
) -> np.ndarray:
    """Descending timesteps as ``DDIMScheduler.set_timesteps`` (SD1.5: leading, offset 1)."""
    n, T = num_inference_steps, num_train_timesteps
    if not 0 < n <= T:
        raise ValueError(f"num_inference_steps must be in 1..{T}, got {n}")
    if spacing == "leading":
        ts = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + steps_offset
    elif spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}")
    return ts


def ddim_prev_timestep(t: jax.Array | int, num_inference_steps: int, num_train_timesteps: int = 1000):
    return t - num_train_timesteps // num_inference_steps


def ddim_step(
    s: NoiseSchedule,
    model_output: jax.Array,
    t: jax.Array | int,
    sample: jax.Array,
    prev_t: jax.Array | int,
    *,
    eta: float = 0.0,
    noise: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """One DDIM update ``x_t -> x_prev_t``; returns ``(prev_sample, pred_x0)``.
    With ``eta > 0`` the stochastic term uses ``noise`` (required then)."""
    x0, eps = predict_x0_eps(s, model_output, t, sample)
    a, a_prev = _bcast(s.alpha(t), sample), _bcast(s.alpha(prev_t), sample)
    std = 0.0
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        std = eta * jnp.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
    prev = jnp.sqrt(a_prev) * x0 + jnp.sqrt(1 - a_prev - std**2) * eps
    if eta > 0:
        prev = prev + std * noise
    return prev, x0


def ddim_inverse_timesteps(
    num_inference_steps: int, *, num_train_timesteps: int = 1000, spacing: str = "leading", steps_offset: int = 1
) -> np.ndarray:
    """Ascending target timesteps as ``DDIMInverseScheduler.set_timesteps``: the sampling
    timesteps in reverse (diffusers' inverse scheduler knows only leading and trailing)."""
    if spacing not in ("leading", "trailing"):
        raise ValueError(f"unknown timestep spacing {spacing!r} (leading, trailing)")
    return ddim_timesteps(
        num_inference_steps, num_train_timesteps=num_train_timesteps, spacing=spacing, steps_offset=steps_offset
    )[::-1]


def ddim_inverse_step(
    s: NoiseSchedule, model_output: jax.Array, t: jax.Array | int, sample: jax.Array, num_inference_steps: int
) -> tuple[jax.Array, jax.Array]:
    """Deterministic DDIM inversion ``x_{t - T/n} -> x_t`` (``t`` is the *target*, as diffusers
    passes it); returns ``(next_sample, pred_x0)``. ``s.final_alpha_cumprod`` plays the role of
    diffusers' ``initial_alpha_cumprod`` for the first step."""
    T = s.num_train_timesteps
    t = jnp.asarray(t)
    t_from = jnp.minimum(t - T // num_inference_steps, T - 1)
    x0, eps = predict_x0_eps(s, model_output, t_from, sample)
    a_to = _bcast(s.alpha(t), sample)
    return jnp.sqrt(a_to) * x0 + jnp.sqrt(1 - a_to) * eps, x0
