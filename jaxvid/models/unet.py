"""Flax NNX port of diffusers' ``UNet2DConditionModel`` for SD 1.x / 2.x and LCM configs.

Public call: ``unet(sample NHWC, timestep, encoder_hidden_states, timestep_cond=None) -> NHWC``.
Parameter paths mirror diffusers (``down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.config import config_from_dict, jaxvid_only
from jaxvid.models.embeddings import TimestepEmbedding, timestep_embedding
from jaxvid.models.layers import Dtype, activation, conv2d, group_norm
from jaxvid.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D
from jaxvid.models.transformer import AttentionControl, BasicTransformerBlock, Temporal, Transformer2DModel, remat_wrap

_UNSUPPORTED = {
    "center_input_sample": False,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "class_embed_type": None,
    "addition_embed_type": None,
    "num_class_embeds": None,
    "encoder_hid_dim": None,
    "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "attention_type": "default",
    "cross_attention_norm": None,
    "time_embedding_dim": None,
    "time_embedding_act_fn": None,
    "resnet_skip_time_act": False,
    "resnet_out_scale_factor": 1.0,
    "reverse_transformer_layers_per_block": None,
    "mid_block_scale_factor": 1,
}

_DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
_UP = ("CrossAttnUpBlock2D", "UpBlock2D")


def _per_block(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Architecture of a UNet2DConditionModel; field names are the diffusers config keys."""

    sample_size: int | None = 64
    in_channels: int = 4
    out_channels: int = 4
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    down_block_types: tuple[str, ...] = (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    )
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int | tuple[int, ...] = 2
    downsample_padding: int = 1
    act_fn: str = "silu"
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int | tuple[int, ...] = 768
    transformer_layers_per_block: int | tuple[int, ...] = 1
    attention_head_dim: int | tuple[int, ...] = 8
    num_attention_heads: int | tuple[int, ...] | None = None
    use_linear_projection: bool = False
    upcast_attention: bool = False
    time_cond_proj_dim: int | None = None
    attention_kernel: str = jaxvid_only("auto")

    def __post_init__(self) -> None:
        n = len(self.block_out_channels)
        if len(self.down_block_types) != n or len(self.up_block_types) != n:
            raise ValueError("down_block_types, up_block_types and block_out_channels must have equal length")
        bad = [t for t in self.down_block_types if t not in _DOWN] + [t for t in self.up_block_types if t not in _UP]
        if bad:
            raise NotImplementedError(f"UNet block types not ported: {bad}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> "UNetConfig":
        return config_from_dict(cls, d, required_defaults=_UNSUPPORTED, overrides=overrides)

    @property
    def heads(self) -> tuple[int, ...]:
        """Heads per block. diffusers' ``attention_head_dim`` really means the number of heads
        when ``num_attention_heads`` is unset (a documented naming accident kept for old configs)."""
        return _per_block(self.num_attention_heads or self.attention_head_dim, len(self.block_out_channels))

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


def _resnet(resnet: ResnetBlock2D, x: jax.Array, temb: jax.Array) -> jax.Array:
    return resnet(x, temb)


def _attend(attn: Transformer2DModel, x, context, control, temporal: Temporal | None, remat: str | None):
    """A spatial transformer, threading the temporal states: ``-> (x, temporal)``."""
    x, states = attn(x, context, control, temporal, remat)
    return x, None if temporal is None else (temporal[0], states)


class _Blocks(nnx.Module):
    """Shared constructor pieces of the down/mid/up blocks."""

    @staticmethod
    def resnet(cfg: UNetConfig, cin: int, cout: int, kw: dict) -> ResnetBlock2D:
        return ResnetBlock2D(
            cin, cout, temb_channels=cfg.time_embed_dim, groups=cfg.norm_num_groups, eps=cfg.norm_eps,
            act_fn=cfg.act_fn, **kw,
        )

    @staticmethod
    def transformer(cfg: UNetConfig, channels: int, heads: int, layers: int, cross_dim: int, kw: dict):
        return Transformer2DModel(
            heads, channels // heads, channels, num_layers=layers, cross_attention_dim=cross_dim,
            norm_num_groups=cfg.norm_num_groups, use_linear_projection=cfg.use_linear_projection,
            upcast_attention=cfg.upcast_attention, attention_kernel=cfg.attention_kernel, **kw,
        )


class DownBlock(_Blocks):
    """``CrossAttnDownBlock2D`` (with ``attentions``) or ``DownBlock2D`` (without)."""

    def __init__(self, cfg: UNetConfig, i: int, cin: int, cout: int, *, kw: dict):
        n = _per_block(cfg.layers_per_block, len(cfg.block_out_channels))[i]
        cross = cfg.down_block_types[i] == "CrossAttnDownBlock2D"
        tl = _per_block(cfg.transformer_layers_per_block, len(cfg.block_out_channels))[i]
        xdim = _per_block(cfg.cross_attention_dim, len(cfg.block_out_channels))[i]
        self.resnets = nnx.List([self.resnet(cfg, cin if j == 0 else cout, cout, kw) for j in range(n)])
        self.attentions = (
            nnx.List([self.transformer(cfg, cout, cfg.heads[i], tl, xdim, kw) for _ in range(n)]) if cross else None
        )
        final = i == len(cfg.block_out_channels) - 1
        self.downsamplers = None if final else nnx.List([Downsample2D(cout, padding=cfg.downsample_padding, **kw)])

    def __call__(
        self, x: jax.Array, temb: jax.Array, context: jax.Array, control=None, temporal: Temporal | None = None,
        remat: str | None = None,
    ) -> tuple[jax.Array, list[jax.Array], Temporal | None]:
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = remat_wrap(_resnet, remat)(resnet, x, temb)
            if self.attentions is not None:
                x, temporal = _attend(self.attentions[j], x, context, control, temporal, remat)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips, temporal


class MidBlock(_Blocks):
    """``UNetMidBlock2DCrossAttn``: resnet, then (attention, resnet) per transformer layer."""

    def __init__(self, cfg: UNetConfig, *, kw: dict):
        c = cfg.block_out_channels[-1]
        tl = _per_block(cfg.transformer_layers_per_block, len(cfg.block_out_channels))[-1]
        xdim = _per_block(cfg.cross_attention_dim, len(cfg.block_out_channels))[-1]
        self.resnets = nnx.List([self.resnet(cfg, c, c, kw) for _ in range(2)])
        self.attentions = nnx.List([self.transformer(cfg, c, cfg.heads[-1], tl, xdim, kw)])

    def __call__(
        self, x: jax.Array, temb: jax.Array, context: jax.Array, control=None, temporal: Temporal | None = None,
        remat: str | None = None,
    ) -> tuple[jax.Array, Temporal | None]:
        x = remat_wrap(_resnet, remat)(self.resnets[0], x, temb)
        for attn, resnet in zip(self.attentions, self.resnets[1:], strict=True):
            x, temporal = _attend(attn, x, context, control, temporal, remat)
            x = remat_wrap(_resnet, remat)(resnet, x, temb)
        return x, temporal


class UpBlock(_Blocks):
    """``CrossAttnUpBlock2D`` / ``UpBlock2D``: each resnet eats one skip connection."""

    def __init__(self, cfg: UNetConfig, i: int, prev_out: int, cin: int, cout: int, *, kw: dict):
        nb = len(cfg.block_out_channels)
        n = tuple(reversed(_per_block(cfg.layers_per_block, nb)))[i] + 1
        cross = cfg.up_block_types[i] == "CrossAttnUpBlock2D"
        tl = tuple(reversed(_per_block(cfg.transformer_layers_per_block, nb)))[i]
        xdim = tuple(reversed(_per_block(cfg.cross_attention_dim, nb)))[i]
        heads = tuple(reversed(cfg.heads))[i]
        self.resnets = nnx.List(
            [
                self.resnet(cfg, (prev_out if j == 0 else cout) + (cin if j == n - 1 else cout), cout, kw)
                for j in range(n)
            ]
        )
        self.attentions = nnx.List([self.transformer(cfg, cout, heads, tl, xdim, kw) for _ in range(n)]) if cross else None
        self.upsamplers = None if i == nb - 1 else nnx.List([Upsample2D(cout, **kw)])

    def __call__(
        self, x: jax.Array, skips: list[jax.Array], temb: jax.Array, context: jax.Array, control=None,
        temporal: Temporal | None = None, remat: str | None = None,
    ) -> tuple[jax.Array, Temporal | None]:
        for j, resnet in enumerate(self.resnets):
            x = remat_wrap(_resnet, remat)(resnet, jnp.concatenate([x, skips.pop()], axis=-1), temb)
            if self.attentions is not None:
                x, temporal = _attend(self.attentions[j], x, context, control, temporal, remat)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x, temporal


class UNet2DConditionModel(nnx.Module):
    def __init__(
        self,
        config: UNetConfig,
        *,
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        self.config = config
        self.dtype = dtype
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        boc = config.block_out_channels
        self.conv_in = conv2d(config.in_channels, boc[0], 3, **kw)
        self.time_embedding = TimestepEmbedding(
            boc[0], config.time_embed_dim, act_fn=config.act_fn, cond_proj_dim=config.time_cond_proj_dim, **kw
        )
        downs, out = [], boc[0]
        for i in range(len(boc)):
            cin, out = out, boc[i]
            downs.append(DownBlock(config, i, cin, out, kw=kw))
        self.down_blocks = nnx.List(downs)
        self.mid_block = MidBlock(config, kw=kw)
        rev = tuple(reversed(boc))
        ups, out = [], rev[0]
        for i in range(len(boc)):
            prev, out = out, rev[i]
            ups.append(UpBlock(config, i, prev, rev[min(i + 1, len(boc) - 1)], out, kw=kw))
        self.up_blocks = nnx.List(ups)
        self.conv_norm_out = group_norm(boc[0], config.norm_num_groups, config.norm_eps, **kw)
        self.conv_out = conv2d(boc[0], config.out_channels, 3, **kw)
        for site, block in enumerate(self.transformer_blocks()):
            block.site = site

    def transformer_blocks(self) -> list[BasicTransformerBlock]:
        """Every transformer block in forward order (down, mid, up): the attention-control and
        temporal-module sites (16 for SD1.5)."""
        blocks = [*self.down_blocks, self.mid_block, *self.up_blocks]
        return [tb for b in blocks if b.attentions is not None for t in b.attentions for tb in t.transformer_blocks]

    def check_sample(self, sample: jax.Array) -> None:
        f = self.config.downsample_factor
        if sample.ndim != 4 or sample.shape[-1] != self.config.in_channels:
            raise ValueError(f"UNet expects NHWC latents with {self.config.in_channels} channels, got {sample.shape}")
        if sample.shape[1] % f or sample.shape[2] % f:
            raise ValueError(f"latent height/width must be multiples of {f}, got {sample.shape[1:3]}")

    def time_embed(self, timestep: jax.Array, batch: int, timestep_cond: jax.Array | None) -> jax.Array:
        t = jnp.broadcast_to(jnp.asarray(timestep, jnp.float32).reshape(-1), (batch,))
        t_emb = timestep_embedding(
            t, self.config.block_out_channels[0], flip_sin_to_cos=self.config.flip_sin_to_cos,
            downscale_freq_shift=self.config.freq_shift,
        ).astype(self.dtype or jnp.float32)
        if timestep_cond is not None:
            timestep_cond = jnp.broadcast_to(timestep_cond, (batch, timestep_cond.shape[-1])).astype(t_emb.dtype)
        return self.time_embedding(t_emb, timestep_cond)

    def __call__(
        self,
        sample: jax.Array,
        timestep: jax.Array | float,
        encoder_hidden_states: jax.Array,
        timestep_cond: jax.Array | None = None,
        control: AttentionControl | None = None,
    ) -> jax.Array:
        """``control`` replaces every transformer block's attention computation (same weights)."""
        return self.forward(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond, control=control)[0]

    def forward(
        self,
        sample: jax.Array,
        timestep: jax.Array | float,
        encoder_hidden_states: jax.Array,
        *,
        timestep_cond: jax.Array | None = None,
        control: AttentionControl | None = None,
        temporal: Temporal | None = None,
        remat: str | None = None,
    ) -> tuple[jax.Array, tuple | None]:
        """The full call: ``-> (noise prediction, temporal states)``. ``temporal = (modules,
        states)`` runs a temporal module after every transformer block (see models/temporal.py);
        ``remat`` names a ``jax.checkpoint_policies`` policy to rematerialise every resnet and
        every transformer block (with its temporal module) in the backward pass."""
        self.check_sample(sample)
        batch = sample.shape[0]
        temb = self.time_embed(timestep, batch, timestep_cond)
        context = encoder_hidden_states
        if self.dtype is not None:
            sample, context = sample.astype(self.dtype), context.astype(self.dtype)
        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, s, temporal = block(x, temb, context, control, temporal, remat)
            skips += s
        x, temporal = self.mid_block(x, temb, context, control, temporal, remat)
        for block in self.up_blocks:
            n = len(block.resnets)
            (x, temporal), skips = block(x, skips[-n:], temb, context, control, temporal, remat), skips[:-n]
        x = activation(self.config.act_fn)(self.conv_norm_out(x))
        return self.conv_out(x), None if temporal is None else temporal[1]
