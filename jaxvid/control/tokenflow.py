"""TokenFlow keyframe selection and neighbour tables (pure functions, jittable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pick_keyframes(key: jax.Array, num_frames: int, interval: int) -> jax.Array:
    """One keyframe per group of ``interval`` frames, at a random offset inside its group."""
    starts = jnp.arange(0, num_frames, interval)
    sizes = jnp.minimum(interval, num_frames - starts)
    return starts + jnp.floor(jax.random.uniform(key, starts.shape) * sizes).astype(jnp.int32)


def neighbours(keyframes: jax.Array, frames: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """For each frame: index (into ``keyframes``) of the keyframe at/before it, at/after it, and
    the weight of the latter, ``(f - k-) / (k+ - k-)`` (0 when both are the same keyframe).
    Frames before the first / after the last keyframe use that keyframe alone."""
    K = keyframes.shape[0]
    after = jnp.clip(jnp.searchsorted(keyframes, frames, side="left"), 0, K - 1)
    before = jnp.clip(jnp.searchsorted(keyframes, frames, side="right") - 1, 0, K - 1)
    kb, ka = keyframes[before], keyframes[after]
    gap = (ka - kb).astype(jnp.float32)
    w = jnp.where(gap > 0, (frames - kb).astype(jnp.float32) / jnp.where(gap > 0, gap, 1.0), 0.0)
    return before, after, w
