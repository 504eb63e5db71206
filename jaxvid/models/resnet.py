"""ResNet block and the resamplers of the UNet and VAE (diffusers ``resnet.py``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.layers import Dtype, activation, conv2d, group_norm, linear, upsample_nearest_2x


class ResnetBlock2D(nnx.Module):
    """GroupNorm-act-conv twice, time embedding added between, 1x1 shortcut when widths differ."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        temb_channels: int | None = 512,
        groups: int = 32,
        eps: float = 1e-6,
        act_fn: str = "silu",
        output_scale_factor: float = 1.0,
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        out_channels = out_channels or in_channels
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.act_fn = act_fn
        self.output_scale_factor = output_scale_factor
        self.norm1 = group_norm(in_channels, groups, eps, **kw)
        self.conv1 = conv2d(in_channels, out_channels, 3, **kw)
        self.time_emb_proj = linear(temb_channels, out_channels, **kw) if temb_channels is not None else None
        self.norm2 = group_norm(out_channels, groups, eps, **kw)
        self.conv2 = conv2d(out_channels, out_channels, 3, **kw)
        self.conv_shortcut = (
            conv2d(in_channels, out_channels, 1, padding=0, **kw) if in_channels != out_channels else None
        )

    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        act = activation(self.act_fn)
        h = self.conv1(act(self.norm1(x)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(act(temb))[:, None, None, :]
        h = self.conv2(act(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return (x + h) / self.output_scale_factor


class Downsample2D(nnx.Module):
    """Stride-2 conv. ``padding=0`` is the VAE's asymmetric (right/bottom) zero pad."""

    def __init__(
        self,
        channels: int,
        *,
        padding: int = 1,
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        pad = ((0, 1), (0, 1)) if padding == 0 else padding
        self.conv = conv2d(channels, channels, 3, stride=2, padding=pad, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(x)


class Upsample2D(nnx.Module):
    """Nearest 2x then 3x3 conv."""

    def __init__(
        self,
        channels: int,
        *,
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        self.conv = conv2d(channels, channels, 3, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(upsample_nearest_2x(x))
