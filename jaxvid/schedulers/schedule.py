"""The discrete noise schedule shared by the DDIM and LCM samplers: pure, jittable functions."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class NoiseSchedule:
    """Cumulative alphas ``a_t`` of the forward process, plus the value used for "t = -1"
    (1.0 with ``set_alpha_to_one``, else ``a_0``), as diffusers' DDIM/LCM schedulers keep it."""

    alphas_cumprod: jax.Array
    final_alpha_cumprod: jax.Array
    num_train_timesteps: int = struct.field(pytree_node=False, default=1000)
    prediction_type: str = struct.field(pytree_node=False, default="epsilon")
    config: tuple = struct.field(pytree_node=False, default=())  # make_schedule's arguments, as (key, value) pairs

    def to_config(self) -> dict[str, Any]:
        """The arguments that rebuild this schedule (a diffusers scheduler config's keys)."""
        return dict(self.config)

    def alpha(self, t: jax.Array | int) -> jax.Array:
        """``a_t`` for integer timesteps (any shape); negative ``t`` gives the final alpha."""
        t = jnp.asarray(t)
        return jnp.where(t >= 0, self.alphas_cumprod[jnp.clip(t, 0, self.num_train_timesteps - 1)], self.final_alpha_cumprod)


def make_schedule(
    *,
    num_train_timesteps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    beta_schedule: str = "scaled_linear",
    set_alpha_to_one: bool = False,
    prediction_type: str = "epsilon",
) -> NoiseSchedule:
    """SD's scaled-linear betas (``linspace(sqrt(b0), sqrt(b1))**2``) or plain linear ones,
    computed in float32 like diffusers."""
    if beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=np.float32) ** 2
    elif beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, num_train_timesteps, dtype=np.float32)
    else:
        raise NotImplementedError(f"beta_schedule {beta_schedule!r} is not supported (scaled_linear, linear)")
    if prediction_type not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"unknown prediction_type {prediction_type!r}")
    ac = np.cumprod(1.0 - betas, dtype=np.float32)
    final = np.float32(1.0) if set_alpha_to_one else ac[0]
    args = dict(num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
                beta_schedule=beta_schedule, set_alpha_to_one=set_alpha_to_one, prediction_type=prediction_type)
    # device_put, not jnp.asarray: the latter compiles a small program per shape (start-up time)
    return NoiseSchedule(jax.device_put(ac), jax.device_put(final), num_train_timesteps, prediction_type,
                         tuple(sorted(args.items())))


def schedule_from_config(cfg: Mapping[str, Any]) -> NoiseSchedule:
    """A schedule from a diffusers ``scheduler_config.json`` dict (DDIM, LCM, PNDM, ... share these keys)."""
    if cfg.get("trained_betas") is not None:
        raise NotImplementedError("schedules given by trained_betas are not supported")
    for key in ("rescale_betas_zero_snr", "clip_sample", "thresholding"):
        if cfg.get(key):
            raise NotImplementedError(f"scheduler option {key}=True is not supported (SD and LCM configs leave it off)")
    return make_schedule(
        num_train_timesteps=cfg.get("num_train_timesteps", 1000),
        beta_start=cfg.get("beta_start", 0.00085),
        beta_end=cfg.get("beta_end", 0.012),
        beta_schedule=cfg.get("beta_schedule", "scaled_linear"),
        set_alpha_to_one=cfg.get("set_alpha_to_one", False),
        prediction_type=cfg.get("prediction_type", "epsilon"),
    )


def _bcast(a: jax.Array, like: jax.Array) -> jax.Array:
    """Per-sample scalars ``[B]`` (or one scalar) broadcast against ``[B, ...]`` arrays."""
    a = jnp.asarray(a, like.dtype)
    return a.reshape(a.shape + (1,) * (like.ndim - a.ndim)) if a.ndim else a


def add_noise(s: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array | int) -> jax.Array:
    """``sqrt(a_t) x0 + sqrt(1 - a_t) noise``; ``t`` scalar or one per sample."""
    a = _bcast(s.alpha(t), x0)
    return jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * noise


def training_target(s: NoiseSchedule, x0: jax.Array, noise: jax.Array, t: jax.Array | int) -> jax.Array:
    """What the model is trained to output for ``add_noise(s, x0, noise, t)``, by the schedule's
    ``prediction_type``: the noise, the velocity ``sqrt(a) noise - sqrt(1-a) x0``, or ``x0``."""
    if s.prediction_type == "epsilon":
        return noise
    if s.prediction_type == "sample":
        return x0
    a = _bcast(s.alpha(t), x0)
    return jnp.sqrt(a) * noise - jnp.sqrt(1 - a) * x0


def predict_x0_eps(s: NoiseSchedule, model_output: jax.Array, t: jax.Array | int, sample: jax.Array):
    """Clean sample and noise implied by the model output, for each ``prediction_type``."""
    a = _bcast(s.alpha(t), sample)
    if s.prediction_type == "epsilon":
        eps = model_output
        x0 = (sample - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a)
    elif s.prediction_type == "sample":
        x0 = model_output
        eps = (sample - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
    else:  # v_prediction
        x0 = jnp.sqrt(a) * sample - jnp.sqrt(1 - a) * model_output
        eps = jnp.sqrt(a) * model_output + jnp.sqrt(1 - a) * sample
    return x0, eps
