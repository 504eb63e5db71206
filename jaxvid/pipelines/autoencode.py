"""Pixels <-> UNet latents for either autoencoder (KL with its scaling factor, or TAESD)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxvid.models.tiny_vae import AutoencoderTiny
from jaxvid.models.vae import AutoencoderKL


def encode_latents(vae: AutoencoderKL | AutoencoderTiny, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """Images NHWC in [-1, 1] -> scaled latents; samples the KL posterior when ``key`` is given
    (as diffusers' img2img does), else takes its mean."""
    if isinstance(vae, AutoencoderTiny):
        return vae.encode(images)
    dist = vae.encode(images)
    return vae.scale_latents(dist.sample(key) if key is not None else dist.mode())


def decode_latents(vae: AutoencoderKL | AutoencoderTiny, latents: jax.Array) -> jax.Array:
    """Scaled latents -> images NHWC in [-1, 1] (not clipped)."""
    if isinstance(vae, AutoencoderTiny):
        return vae.decode(latents)
    return vae.decode(vae.unscale_latents(latents))


def quantize(images: jax.Array) -> jax.Array:
    """Images in [-1, 1] -> uint8 (jittable)."""
    return jnp.round((jnp.clip(images, -1, 1) + 1) * 127.5).astype(jnp.uint8)


def to_uint8(images: jax.Array) -> np.ndarray:
    """Images in [-1, 1] -> uint8 numpy on the host."""
    return np.asarray(quantize(images))


def from_uint8(images: np.ndarray) -> jax.Array:
    """uint8 ``[..., H, W, 3]`` -> float32 in [-1, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}")
    return jnp.asarray(images, jnp.float32) / 127.5 - 1.0
