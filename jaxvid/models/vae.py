"""Flax NNX port of diffusers' ``AutoencoderKL`` (the SD VAE). Images NHWC in [-1, 1]."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxvid.models.attention import Attention
from jaxvid.models.config import config_from_dict
from jaxvid.models.layers import Dtype, activation, conv2d, group_norm
from jaxvid.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D

_UNSUPPORTED = {"norm_type": "group", "latents_mean": None, "latents_std": None}


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",) * 4
    up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",) * 4
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    act_fn: str = "silu"
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 512
    scaling_factor: float = 0.18215
    shift_factor: float | None = None
    force_upcast: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> "VAEConfig":
        bad = [t for t in d.get("down_block_types", []) if t != "DownEncoderBlock2D"]
        bad += [t for t in d.get("up_block_types", []) if t != "UpDecoderBlock2D"]
        if bad:
            raise NotImplementedError(f"VAE block types not ported: {bad}")
        return config_from_dict(cls, d, required_defaults=_UNSUPPORTED, overrides=overrides)

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@struct.dataclass
class DiagonalGaussian:
    """The encoder's latent distribution (``mean``, clamped ``logvar``), NHWC."""

    mean: jax.Array
    logvar: jax.Array

    @property
    def std(self) -> jax.Array:
        return jnp.exp(0.5 * self.logvar)

    def sample(self, key: jax.Array) -> jax.Array:
        return self.mean + self.std * jax.random.normal(key, self.mean.shape, self.mean.dtype)

    def mode(self) -> jax.Array:
        return self.mean


class VAEMidBlock(nnx.Module):
    """``UNetMidBlock2D`` without time embedding: resnet, single-head attention, resnet."""

    def __init__(self, cfg: VAEConfig, channels: int, *, kw: dict):
        res = dict(temb_channels=None, groups=cfg.norm_num_groups, eps=1e-6, act_fn=cfg.act_fn)
        self.resnets = nnx.List([ResnetBlock2D(channels, channels, **res, **kw) for _ in range(2)])
        self.attentions = (
            nnx.List(
                [
                    Attention(
                        channels, heads=1, dim_head=channels, bias=True, norm_num_groups=cfg.norm_num_groups,
                        eps=1e-6, residual_connection=True, **kw,
                    )
                ]
            )
            if cfg.mid_block_add_attention
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.resnets[0](x)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class EncoderBlock(nnx.Module):
    def __init__(self, cfg: VAEConfig, cin: int, cout: int, n: int, downsample: bool, *, kw: dict):
        res = dict(temb_channels=None, groups=cfg.norm_num_groups, eps=1e-6, act_fn=cfg.act_fn)
        self.resnets = nnx.List([ResnetBlock2D(cin if j == 0 else cout, cout, **res, **kw) for j in range(n)])
        self.downsamplers = nnx.List([Downsample2D(cout, padding=0, **kw)]) if downsample else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for r in self.resnets:
            x = r(x)
        return self.downsamplers[0](x) if self.downsamplers is not None else x


class DecoderBlock(nnx.Module):
    def __init__(self, cfg: VAEConfig, cin: int, cout: int, n: int, upsample: bool, *, kw: dict):
        res = dict(temb_channels=None, groups=cfg.norm_num_groups, eps=1e-6, act_fn=cfg.act_fn)
        self.resnets = nnx.List([ResnetBlock2D(cin if j == 0 else cout, cout, **res, **kw) for j in range(n)])
        self.upsamplers = nnx.List([Upsample2D(cout, **kw)]) if upsample else None

    def __call__(self, x: jax.Array) -> jax.Array:
        for r in self.resnets:
            x = r(x)
        return self.upsamplers[0](x) if self.upsamplers is not None else x


class Encoder(nnx.Module):
    def __init__(self, cfg: VAEConfig, *, kw: dict):
        boc = cfg.block_out_channels
        self.act_fn = cfg.act_fn
        self.conv_in = conv2d(cfg.in_channels, boc[0], 3, **kw)
        self.down_blocks = nnx.List(
            [
                EncoderBlock(cfg, boc[max(i - 1, 0)], boc[i], cfg.layers_per_block, i < len(boc) - 1, kw=kw)
                for i in range(len(boc))
            ]
        )
        self.mid_block = VAEMidBlock(cfg, boc[-1], kw=kw)
        self.conv_norm_out = group_norm(boc[-1], cfg.norm_num_groups, 1e-6, **kw)
        self.conv_out = conv2d(boc[-1], 2 * cfg.latent_channels, 3, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv_in(x)
        for b in self.down_blocks:
            x = b(x)
        x = self.mid_block(x)
        return self.conv_out(activation(self.act_fn)(self.conv_norm_out(x)))


class Decoder(nnx.Module):
    def __init__(self, cfg: VAEConfig, *, kw: dict):
        rev = tuple(reversed(cfg.block_out_channels))
        self.act_fn = cfg.act_fn
        self.conv_in = conv2d(cfg.latent_channels, rev[0], 3, **kw)
        self.mid_block = VAEMidBlock(cfg, rev[0], kw=kw)
        self.up_blocks = nnx.List(
            [
                DecoderBlock(cfg, rev[max(i - 1, 0)], rev[i], cfg.layers_per_block + 1, i < len(rev) - 1, kw=kw)
                for i in range(len(rev))
            ]
        )
        self.conv_norm_out = group_norm(rev[-1], cfg.norm_num_groups, 1e-6, **kw)
        self.conv_out = conv2d(rev[-1], cfg.out_channels, 3, **kw)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            x = b(x)
        return self.conv_out(activation(self.act_fn)(self.conv_norm_out(x)))


class AutoencoderKL(nnx.Module):
    """``encode(images) -> DiagonalGaussian`` and ``decode(latents) -> images``; both unscaled:
    multiply sampled latents by :attr:`VAEConfig.scaling_factor` for the UNet (see
    :meth:`scale_latents`)."""

    def __init__(
        self, config: VAEConfig, *, rngs: nnx.Rngs, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32
    ):
        self.config = config
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        lc = config.latent_channels
        self.encoder = Encoder(config, kw=kw)
        self.decoder = Decoder(config, kw=kw)
        self.quant_conv = conv2d(2 * lc, 2 * lc, 1, padding=0, **kw) if config.use_quant_conv else None
        self.post_quant_conv = conv2d(lc, lc, 1, padding=0, **kw) if config.use_post_quant_conv else None

    def encode(self, images: jax.Array) -> DiagonalGaussian:
        f = self.config.downsample_factor
        if images.ndim != 4 or images.shape[-1] != self.config.in_channels or images.shape[1] % f or images.shape[2] % f:
            raise ValueError(
                f"VAE expects NHWC images with {self.config.in_channels} channels and sides divisible by {f}, "
                f"got {images.shape}"
            )
        h = self.encoder(images)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean, logvar = jnp.split(h, 2, axis=-1)
        return DiagonalGaussian(mean, jnp.clip(logvar, -30.0, 20.0))

    def decode(self, latents: jax.Array) -> jax.Array:
        if self.post_quant_conv is not None:
            latents = self.post_quant_conv(latents)
        return self.decoder(latents)

    def scale_latents(self, z: jax.Array) -> jax.Array:
        """VAE latent -> UNet latent space."""
        return (z - (self.config.shift_factor or 0.0)) * self.config.scaling_factor

    def unscale_latents(self, z: jax.Array) -> jax.Array:
        return z / self.config.scaling_factor + (self.config.shift_factor or 0.0)
