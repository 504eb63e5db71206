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


def neighbours_released(keyframes: jax.Array, frames: jax.Array, interval: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The authors' code's rule: each frame mixes the keyframe of its own group (of ``interval``
    frames) with the previous group's, weighted ``sigmoid(d_prev / (d_own + d_prev))`` for its own,
    where the distances are to the two groups' *centres* (not the keyframes); the first group uses
    its own keyframe alone. Returns ``(previous, own, weight of own)`` as :func:`neighbours` does."""
    group = frames // interval
    own = jnp.clip(group, 0, keyframes.shape[0] - 1)
    prev = jnp.maximum(own - 1, 0)
    d_own = jnp.abs(frames - (group * interval + interval // 2)).astype(jnp.float32)
    d_prev = jnp.abs(frames - ((group - 1) * interval + interval // 2)).astype(jnp.float32)
    w = jnp.where(group > 0, jax.nn.sigmoid(d_prev / (d_own + d_prev)), 1.0)
    return prev, own, w
