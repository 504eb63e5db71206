"""Flax NNX port of transformers' CLIP: text encoder (SD conditioning) and the full
``CLIPModel`` with the vision tower and projections (metrics).

Parameter paths mirror transformers (``text_model.encoder.layers.0.self_attn.q_proj``).
Images are NHWC, already resized and normalised with CLIP's mean/std.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import jax.numpy as jnp
from flax import nnx, struct

from jaxvid.models.attention import get_attention_kernel
from jaxvid.models.config import config_from_dict
from jaxvid.models.layers import Dtype, activation, conv2d, layer_norm, linear


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    pad_token_id: int = 1
    bos_token_id: int = 49406
    eos_token_id: int = 49407

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> "CLIPTextConfig":
        return config_from_dict(cls, d, overrides=overrides)

    def to_dict(self) -> dict[str, Any]:
        return {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], **overrides: Any) -> "CLIPVisionConfig":
        return config_from_dict(cls, d, overrides=overrides)


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
    text_config: CLIPTextConfig = CLIPTextConfig()
    vision_config: CLIPVisionConfig = CLIPVisionConfig()
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CLIPConfig":
        return cls(
            text_config=CLIPTextConfig.from_dict(d.get("text_config") or {}),
            vision_config=CLIPVisionConfig.from_dict(d.get("vision_config") or {}),
            projection_dim=d.get("projection_dim", 512),
            logit_scale_init_value=d.get("logit_scale_init_value", 2.6592),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "architectures": ["CLIPModel"],
            "model_type": "clip",
            "text_config": dataclasses.asdict(self.text_config),
            "vision_config": dataclasses.asdict(self.vision_config),
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
        }


@struct.dataclass
class CLIPOutput:
    """Like transformers' ``BaseModelOutputWithPooling``: per-token states and the pooled vector.
    ``hidden_states`` (embeddings + every layer) only when asked for, e.g. for CLIP skip."""

    last_hidden_state: jax.Array
    pooler_output: jax.Array
    hidden_states: tuple[jax.Array, ...] | None = None


class CLIPAttention(nnx.Module):
    def __init__(self, dim: int, heads: int, *, kw: dict):
        self.heads, self.head_dim = heads, dim // heads
        self.q_proj = linear(dim, dim, **kw)
        self.k_proj = linear(dim, dim, **kw)
        self.v_proj = linear(dim, dim, **kw)
        self.out_proj = linear(dim, dim, **kw)

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        split = lambda t: t.reshape(*t.shape[:-1], self.heads, self.head_dim)  # noqa: E731
        o = get_attention_kernel("auto")(
            split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)), scale=self.head_dim**-0.5, mask=mask
        )
        return self.out_proj(o.reshape(*x.shape[:-1], -1))


class CLIPMLP(nnx.Module):
    def __init__(self, dim: int, inner: int, act: str, *, kw: dict):
        self.act = act
        self.fc1 = linear(dim, inner, **kw)
        self.fc2 = linear(inner, dim, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(activation(self.act)(self.fc1(x)))


class CLIPEncoderLayer(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig | CLIPVisionConfig, *, kw: dict):
        d = cfg.hidden_size
        self.self_attn = CLIPAttention(d, cfg.num_attention_heads, kw=kw)
        self.layer_norm1 = layer_norm(d, cfg.layer_norm_eps, **kw)
        self.mlp = CLIPMLP(d, cfg.intermediate_size, cfg.hidden_act, kw=kw)
        self.layer_norm2 = layer_norm(d, cfg.layer_norm_eps, **kw)

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> jax.Array:
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig | CLIPVisionConfig, *, kw: dict):
        self.layers = nnx.List([CLIPEncoderLayer(cfg, kw=kw) for _ in range(cfg.num_hidden_layers)])

    def __call__(self, x: jax.Array, mask: jax.Array | None) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        states = [x]
        for layer in self.layers:
            x = layer(x, mask)
            states.append(x)
        return x, tuple(states)


class CLIPTextEmbeddings(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, kw: dict):
        emb = dict(dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=kw["rngs"])
        self.token_embedding = nnx.Embed(cfg.vocab_size, cfg.hidden_size, **emb)
        self.position_embedding = nnx.Embed(cfg.max_position_embeddings, cfg.hidden_size, **emb)

    def __call__(self, input_ids: jax.Array) -> jax.Array:
        return self.token_embedding(input_ids) + self.position_embedding(jnp.arange(input_ids.shape[-1]))[None]


class CLIPTextTransformer(nnx.Module):
    def __init__(self, cfg: CLIPTextConfig, *, kw: dict):
        self.config = cfg
        self.embeddings = CLIPTextEmbeddings(cfg, kw=kw)
        self.encoder = CLIPEncoder(cfg, kw=kw)
        self.final_layer_norm = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, **kw)

    def __call__(self, input_ids: jax.Array, output_hidden_states: bool = False) -> CLIPOutput:
        input_ids = jnp.asarray(input_ids)
        if input_ids.ndim != 2 or input_ids.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"input_ids must be [batch, <= {self.config.max_position_embeddings}] token ids, got {input_ids.shape}"
            )
        n = input_ids.shape[1]
        causal = jnp.tril(jnp.ones((n, n), bool))[None, None]
        x, states = self.encoder(self.embeddings(input_ids), causal)
        x = self.final_layer_norm(x)
        if self.config.eos_token_id == 2:
            # Old configs carry a wrong eos id; transformers then pools at the largest id (the EOS).
            eos = jnp.argmax(input_ids, axis=-1)
        else:
            eos = jnp.argmax(input_ids == self.config.eos_token_id, axis=-1)
        pooled = x[jnp.arange(x.shape[0]), eos]
        return CLIPOutput(x, pooled, states if output_hidden_states else None)


class CLIPTextModel(nnx.Module):
    """``text_encoder(input_ids) -> CLIPOutput(last_hidden_state, pooler_output)``."""

    def __init__(
        self, config: CLIPTextConfig, *, rngs: nnx.Rngs, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32
    ):
        self.config = config
        self.text_model = CLIPTextTransformer(config, kw=dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype))

    def __call__(self, input_ids: jax.Array, output_hidden_states: bool = False) -> CLIPOutput:
        return self.text_model(input_ids, output_hidden_states)


class CLIPVisionEmbeddings(nnx.Module):
    def __init__(self, cfg: CLIPVisionConfig, *, kw: dict):
        self.patch = cfg.patch_size
        self.class_embedding = nnx.Param(jnp.zeros((cfg.hidden_size,), kw["param_dtype"]))
        self.patch_embedding = conv2d(
            cfg.num_channels, cfg.hidden_size, cfg.patch_size, stride=cfg.patch_size, padding=0, use_bias=False, **kw
        )
        n = (cfg.image_size // cfg.patch_size) ** 2 + 1
        self.position_embedding = nnx.Embed(
            n, cfg.hidden_size, dtype=kw["dtype"], param_dtype=kw["param_dtype"], rngs=kw["rngs"]
        )

    def __call__(self, pixels: jax.Array) -> jax.Array:
        p = self.patch_embedding(pixels)
        p = p.reshape(p.shape[0], -1, p.shape[-1])
        cls = jnp.broadcast_to(self.class_embedding[...].astype(p.dtype), (p.shape[0], 1, p.shape[-1]))
        x = jnp.concatenate([cls, p], axis=1)
        return x + self.position_embedding(jnp.arange(x.shape[1]))[None]


class CLIPVisionTransformer(nnx.Module):
    def __init__(self, cfg: CLIPVisionConfig, *, kw: dict):
        self.config = cfg
        self.embeddings = CLIPVisionEmbeddings(cfg, kw=kw)
        self.pre_layrnorm = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, **kw)  # sic, transformers' name
        self.encoder = CLIPEncoder(cfg, kw=kw)
        self.post_layernorm = layer_norm(cfg.hidden_size, cfg.layer_norm_eps, **kw)

    def __call__(self, pixels: jax.Array) -> CLIPOutput:
        s = self.config.image_size
        if pixels.ndim != 4 or pixels.shape[1:] != (s, s, self.config.num_channels):
            raise ValueError(f"CLIP vision expects NHWC images of {s}x{s}x{self.config.num_channels}, got {pixels.shape}")
        x, _ = self.encoder(self.pre_layrnorm(self.embeddings(pixels)), None)
        return CLIPOutput(x, self.post_layernorm(x[:, 0]))


class CLIPModel(nnx.Module):
    """Both towers and their projections into the shared embedding space."""

    def __init__(
        self, config: CLIPConfig, *, rngs: nnx.Rngs, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32
    ):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.config = config
        self.text_model = CLIPTextTransformer(config.text_config, kw=kw)
        self.vision_model = CLIPVisionTransformer(config.vision_config, kw=kw)
        self.visual_projection = linear(config.vision_config.hidden_size, config.projection_dim, use_bias=False, **kw)
        self.text_projection = linear(config.text_config.hidden_size, config.projection_dim, use_bias=False, **kw)
        self.logit_scale = nnx.Param(jnp.asarray(config.logit_scale_init_value, param_dtype))

    def get_text_features(self, input_ids: jax.Array) -> jax.Array:
        return self.text_projection(self.text_model(input_ids).pooler_output)

    def get_image_features(self, pixels: jax.Array) -> jax.Array:
        return self.visual_projection(self.vision_model(pixels).pooler_output)
