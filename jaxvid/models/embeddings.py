"""Timestep and guidance embeddings (diffusers ``Timesteps``/``TimestepEmbedding``)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.layers import Dtype, activation, linear


def timestep_embedding(
    timesteps: jax.Array,
    dim: int,
    *,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    scale: float = 1.0,
    max_period: float = 10000.0,
) -> jax.Array:
    """Sinusoidal embedding ``[B, dim]`` of (possibly fractional) timesteps ``[B]``."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - downscale_freq_shift)
    emb = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :] * scale
    emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2 == 1:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def guidance_scale_embedding(w: jax.Array, dim: int = 512) -> jax.Array:
    """Embedding of the guidance scale for fully distilled LCMs (``timestep_cond``).

    Same formula as diffusers' ``LatentConsistencyModelPipeline.get_guidance_scale_embedding``:
    ``w`` is the pipeline's ``guidance_scale - 1``, multiplied by 1000 before the sinusoid.
    """
    w = jnp.asarray(w, jnp.float32).reshape(-1) * 1000.0
    half = dim // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * -(math.log(10000.0) / (half - 1)))
    emb = w[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.sin(emb), jnp.cos(emb)], axis=1)
    if dim % 2 == 1:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


class TimestepEmbedding(nnx.Module):
    """``linear_1 -> act -> linear_2``; ``cond_proj`` adds the guidance embedding of LCMs."""

    def __init__(
        self,
        in_channels: int,
        time_embed_dim: int,
        *,
        act_fn: str = "silu",
        cond_proj_dim: int | None = None,
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.linear_1 = linear(in_channels, time_embed_dim, **kw)
        self.cond_proj = (
            linear(cond_proj_dim, in_channels, use_bias=False, **kw) if cond_proj_dim is not None else None
        )
        self.act_fn = act_fn
        self.linear_2 = linear(time_embed_dim, time_embed_dim, **kw)

    def __call__(self, sample: jax.Array, condition: jax.Array | None = None) -> jax.Array:
        if condition is not None:
            if self.cond_proj is None:
                raise ValueError("timestep_cond given but this UNet has no time_cond_proj_dim")
            sample = sample + self.cond_proj(condition)
        return self.linear_2(activation(self.act_fn)(self.linear_1(sample)))
