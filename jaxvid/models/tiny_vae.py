"""Flax NNX port of diffusers' ``AutoencoderTiny`` (TAESD): a cheap encoder/decoder for streaming.

TAESD latents are already in the UNet's latent space (``scaling_factor`` 1.0), so
``encode``/``decode`` talk to the UNet directly. Images NHWC in [-1, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.config import config_from_dict
from jaxvid.models.layers import Act, Dtype, conv2d, upsample_nearest_2x

_UNSUPPORTED = {"upsample_fn": "nearest", "upsampling_scaling_factor": 2}


@dataclasses.dataclass(frozen=True)
class TinyVAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    encoder_block_out_channels: tuple[int, ...] = (64, 64, 64, 64)
    decoder_block_out_channels: tuple[int, ...] = (64, 64, 64, 64)
    act_fn: str = "relu"
    upsample_fn: str = "nearest"
    latent_channels: int = 4
    upsampling_scaling_factor: int = 2
    num_encoder_blocks: tuple[int, ...] = (1, 3, 3, 3)
    num_decoder_blocks: tuple[int, ...] = (3, 3, 3, 1)
    latent_magnitude: float = 3.0
    latent_shift: float = 0.5
    force_upcast: bool = False
    scaling_factor: float = 1.0
    shift_factor: float = 0.0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> "TinyVAEConfig":
        return config_from_dict(cls, d, required_defaults=_UNSUPPORTED, overrides=overrides)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.encoder_block_out_channels) - 1)


class AutoencoderTinyBlock(nnx.Module):
    """``relu(conv(act(conv(act(conv(x))))) + skip(x))``; ``conv`` indices 0/2/4 as in diffusers."""

    def __init__(self, cin: int, cout: int, act_fn: str, *, kw: dict):
        self.conv = nnx.List(
            [conv2d(cin, cout, 3, **kw), Act(act_fn), conv2d(cout, cout, 3, **kw), Act(act_fn), conv2d(cout, cout, 3, **kw)]
        )
        self.skip = conv2d(cin, cout, 1, padding=0, use_bias=False, **kw) if cin != cout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for layer in self.conv:
            h = layer(h)
        return jax.nn.relu(h + (self.skip(x) if self.skip is not None else x))


class Upsample(nnx.Module):
    """Parameter-free nearest 2x upsampling that holds its index in ``decoder.layers``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return upsample_nearest_2x(x)


class TinyEncoder(nnx.Module):
    def __init__(self, cfg: TinyVAEConfig, *, kw: dict):
        layers: list[nnx.Module] = []
        for i, n in enumerate(cfg.num_encoder_blocks):
            ch = cfg.encoder_block_out_channels[i]
            if i == 0:
                layers.append(conv2d(cfg.in_channels, ch, 3, **kw))
            else:
                layers.append(conv2d(ch, ch, 3, stride=2, use_bias=False, **kw))
            layers += [AutoencoderTinyBlock(ch, ch, cfg.act_fn, kw=kw) for _ in range(n)]
        layers.append(conv2d(cfg.encoder_block_out_channels[-1], cfg.latent_channels, 3, **kw))
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = (x + 1) / 2  # TAESD works on [0, 1] images
        for layer in self.layers:
            x = layer(x)
        return x


class TinyDecoder(nnx.Module):
    def __init__(self, cfg: TinyVAEConfig, *, kw: dict):
        boc = cfg.decoder_block_out_channels
        layers: list[nnx.Module] = [conv2d(cfg.latent_channels, boc[0], 3, **kw), Act(cfg.act_fn)]
        for i, n in enumerate(cfg.num_decoder_blocks):
            final = i == len(cfg.num_decoder_blocks) - 1
            layers += [AutoencoderTinyBlock(boc[i], boc[i], cfg.act_fn, kw=kw) for _ in range(n)]
            if not final:
                layers.append(Upsample())
            layers.append(conv2d(boc[i], cfg.out_channels if final else boc[i], 3, use_bias=final, **kw))
        self.layers = nnx.List(layers)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = jnp.tanh(z / 3) * 3  # TAESD's soft clamp of the latents
        for layer in self.layers:
            x = layer(x)
        return x * 2 - 1


class AutoencoderTiny(nnx.Module):
    def __init__(
        self,
        config: TinyVAEConfig,
        *,
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        self.config = config
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.encoder = TinyEncoder(config, kw=kw)
        self.decoder = TinyDecoder(config, kw=kw)

    def encode(self, images: jax.Array) -> jax.Array:
        f = self.config.downsample_factor
        if images.ndim != 4 or images.shape[-1] != self.config.in_channels or images.shape[1] % f or images.shape[2] % f:
            raise ValueError(
                f"tiny VAE expects NHWC images with {self.config.in_channels} channels and sides divisible by {f}, "
                f"got {images.shape}"
            )
        return self.encoder(images)

    def decode(self, latents: jax.Array) -> jax.Array:
        return self.decoder(latents)
