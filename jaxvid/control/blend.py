"""Latent blending mask (FastVideoEdit eq. 14-15) from captured cross-attention mass."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def blend_mask(captures: list[jax.Array], latent_hw: tuple[int, int], threshold: float | jax.Array) -> jax.Array:
    """``captures``: per-layer ``[m, N]`` share of the edited tokens' attention mass at one
    resolution level. Averaged over layers, upsampled bilinearly to the latent size and
    thresholded: ``[m, h, w, 1]`` in {0, 1}."""
    if not captures:
        raise ValueError("no cross-attention maps were captured at the blend resolution; check blend_downsample")
    a = jnp.mean(jnp.stack(captures), axis=0)
    m, n = a.shape
    side = int(round(n**0.5))
    h, w = latent_hw
    hb, wb = (side, side) if side * side == n else (h * side // w, n // (h * side // w))
    a = jax.image.resize(a.reshape(m, hb, wb), (m, h, w), method="bilinear")
    return (a >= threshold).astype(jnp.float32)[..., None]
