"""Latent-blending masks (FastVideoEdit eq. 14-15) from captured cross-attention, on an explicit
``(rows, cols)`` attention grid (frames need not be square).

Two ways, by ``blend_mode``:

* ``paper`` (jaxvid's default): the *edit* branch's share of attention mass on the edited target
  tokens (relative to all prompt tokens), this step's maps, averaged over the layers of the
  grid's level, upsampled bilinearly and thresholded; outside the mask the edit branch takes
  the background branch's latent.
* ``released`` (the authors' code): the *source* branch's attention on the user's change words
  of the source prompt, summed over all steps so far, max over those tokens, upsampled by
  nearest neighbour, divided by each frame's maximum and thresholded; outside the mask the edit
  branch takes the re-noised *source* latent.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _grid(a: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """``[m, N]`` token values -> ``[m, rows, cols]``; ``N`` must be the grid's size."""
    rows, cols = grid
    if a.shape[-1] != rows * cols:
        raise ValueError(f"{a.shape[-1]} attention tokens do not fill a {rows}x{cols} grid")
    return a.reshape(a.shape[0], rows, cols)


def blend_mask(share: jax.Array, grid: tuple[int, int], latent_hw: tuple[int, int],
               threshold: float | jax.Array) -> jax.Array:
    """``paper`` mode: ``share`` [m, N] (edited tokens' share of the mass, mean over layers) ->
    ``[m, h, w, 1]`` in {0, 1}."""
    a = jax.image.resize(_grid(share, grid), (share.shape[0], *latent_hw), method="bilinear")
    return (a >= threshold).astype(jnp.float32)[..., None]


def released_mask(maps: jax.Array, words: jax.Array, grid: tuple[int, int], latent_hw: tuple[int, int],
                  threshold: float | jax.Array) -> jax.Array:
    """``released`` mode: ``maps`` [m, N, L] (source-branch attention summed over steps, mean
    over layers and heads), ``words`` bool [L] -> ``[m, h, w, 1]`` in {0, 1}."""
    a = jnp.max(jnp.where(words, maps, 0.0), axis=-1)  # strongest change word per position
    a = _grid(a, grid)
    h, w = latent_hw
    rows, cols = grid
    a = a[:, (jnp.arange(h) * rows) // h][:, :, (jnp.arange(w) * cols) // w]  # nearest, as F.interpolate
    a = a / jnp.maximum(a.max(axis=(1, 2), keepdims=True), 1e-12)
    return (a > threshold).astype(jnp.float32)[..., None]
