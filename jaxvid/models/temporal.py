"""Temporal modules at SVDiff's plug point (after every UNet transformer block), by registry.

``memory`` is SVDiff's spatial-aware memory; the others are the paper's Table 1 baselines:
``window`` (attention to the keys/values of the previous 3 frames), ``shift`` (a share of the
channels comes from the previous frame), ``sliding`` (per-position temporal attention over the
last W frames), ``linear`` (causal linear attention over all previous frames). Every module maps
``(x [B, N, C], state) -> (x, state)`` with a fixed-shape state, so a stream step compiles once.
Learned modules start with a zero output projection: untrained, they leave the UNet unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.attention import Attention, get_attention_kernel
from jaxvid.models.build import init_model
from jaxvid.models.layers import Dtype, layer_norm
from jaxvid.models.memory import MEMORY_INITS, MemoryAttention


@dataclasses.dataclass(frozen=True)
class TemporalConfig:
    """Which temporal module and its knobs (ablations included)."""

    kind: str = "memory"  # memory | window | shift | sliding | linear
    memory_hw: tuple[int, int] = (8, 8)  # (1, 1): a single global token
    memory_init: str = "positional"  # positional (paper eq. 6) | learned (per-cell tokens) | shared (w0 only)
    pos_hidden: int = 32
    window: int = 3  # window attention: previous frames cached
    sliding: int = 8  # sliding-window temporal attention: frames attended (incl. the current)
    shift_fraction: float = 0.125  # temporal shift: share of channels taken from the previous frame

    def __post_init__(self) -> None:
        if self.kind not in TEMPORAL_MODULES:
            raise ValueError(f"unknown temporal module {self.kind!r}; known: {sorted(TEMPORAL_MODULES)}")
        if self.memory_init not in MEMORY_INITS:
            raise ValueError(f"memory_init must be one of {MEMORY_INITS}, got {self.memory_init!r}")
        if len(self.memory_hw) != 2 or min(self.memory_hw) < 1:
            raise ValueError(f"memory_hw must be two positive ints, got {self.memory_hw}")
        if self.window < 1 or self.sliding < 2 or self.pos_hidden < 1:
            raise ValueError("window must be >= 1, sliding >= 2 and pos_hidden >= 1")
        if not 0.0 < self.shift_fraction < 1.0:
            raise ValueError(f"shift_fraction must be in (0, 1), got {self.shift_fraction}")


def _norm_kw(kw: dict) -> dict:
    """Layer-construction arguments without the attention kernel."""
    return {k: v for k, v in kw.items() if k != "kernel"}


def _zero_out(attn: Attention) -> Attention:
    out = attn.to_out[0]
    out.kernel.set_value(jnp.zeros_like(out.kernel[...]))
    out.bias.set_value(jnp.zeros_like(out.bias[...]))
    return attn


class MemoryModule(nnx.Module):
    def __init__(self, cfg: TemporalConfig, dim: int, heads: int, *, kw: dict):
        self.memory = MemoryAttention(dim, heads, memory_hw=cfg.memory_hw, init=cfg.memory_init,
                                      pos_hidden=cfg.pos_hidden, **kw)

    def init_state(self, batch: int, tokens: int) -> jax.Array:
        return self.memory.initial_memory(batch)

    def __call__(self, x, state):
        return self.memory(x, state)


class _HistoryAttention(nnx.Module):
    """Shared by the attention baselines that keep the normalised tokens of the last frames."""

    def __init__(self, length: int, dim: int, heads: int, *, kw: dict):
        self.length = length
        self.norm = layer_norm(dim, 1e-5, **_norm_kw(kw))
        self.attn = _zero_out(Attention(dim, heads=heads, dim_head=dim // heads, bias=True, **kw))

    def init_state(self, batch: int, tokens: int) -> dict:
        dim = self.norm.scale.shape[0]
        return {"tokens": jnp.zeros((batch, self.length, tokens, dim)), "valid": jnp.zeros((batch, self.length), bool)}

    @staticmethod
    def push(state: dict, h: jax.Array) -> dict:
        """The history with this frame's tokens in front and the oldest dropped."""
        B = h.shape[0]
        tokens = jnp.concatenate([h[:, None].astype(state["tokens"].dtype), state["tokens"][:, :-1]], axis=1)
        valid = jnp.concatenate([jnp.ones((B, 1), bool), state["valid"][:, :-1]], axis=1)
        return {"tokens": tokens, "valid": valid}


class WindowAttention(_HistoryAttention):
    """Cross-frame attention: queries of this frame, keys/values of this and the cached frames."""

    def __init__(self, cfg: TemporalConfig, dim: int, heads: int, *, kw: dict):
        super().__init__(cfg.window, dim, heads, kw=kw)

    def __call__(self, x, state):
        B, N, C = x.shape
        h = self.norm(x)
        ctx = jnp.concatenate([h, state["tokens"].reshape(B, -1, C).astype(h.dtype)], axis=1)
        valid = jnp.concatenate([jnp.ones((B, N), bool), jnp.repeat(state["valid"], N, axis=1)], axis=1)
        q, k, v = self.attn.qkv(h, ctx)
        o = get_attention_kernel(self.attn.kernel_name)(q, k, v, scale=self.attn.scale, mask=valid[:, None, None, :])
        return x + self.attn.project_out(o), self.push(state, h)


class TemporalShift(nnx.Module):
    """Online temporal shift (TSM): the first ``fraction`` of channels come from the previous
    frame (zeros before the first). Parameter-free."""

    has_weights = False  # nothing to train or load

    def __init__(self, cfg: TemporalConfig, dim: int, heads: int, *, kw: dict):
        self.dim = dim
        self.n_shift = max(1, int(dim * cfg.shift_fraction))

    def init_state(self, batch: int, tokens: int) -> jax.Array:
        return jnp.zeros((batch, tokens, self.dim))

    def __call__(self, x, state):
        k = self.n_shift
        return jnp.concatenate([state[..., :k].astype(x.dtype), x[..., k:]], axis=-1), x.astype(state.dtype)


class SlidingWindowAttention(_HistoryAttention):
    """Temporal attention per spatial position over the last ``sliding`` frames."""

    def __init__(self, cfg: TemporalConfig, dim: int, heads: int, *, kw: dict):
        super().__init__(cfg.sliding - 1, dim, heads, kw=kw)

    def __call__(self, x, state):
        B, N, C = x.shape
        h = self.norm(x)
        seq = jnp.concatenate([h[:, None], state["tokens"].astype(h.dtype)], axis=1)  # [B, T, N, C]
        seq = seq.transpose(0, 2, 1, 3).reshape(B * N, -1, C)  # each position's history
        valid = jnp.concatenate([jnp.ones((B, 1), bool), state["valid"]], axis=1)
        q, k, v = self.attn.qkv(h.reshape(B * N, 1, C), seq)
        mask = jnp.repeat(valid, N, axis=0)[:, None, None, :]
        o = get_attention_kernel(self.attn.kernel_name)(q, k, v, scale=self.attn.scale, mask=mask)
        return x + self.attn.project_out(o).reshape(B, N, C), self.push(state, h)


class LinearAttention(nnx.Module):
    """Causal linear ("efficient") attention per position over all previous frames: the state is
    the running sums ``S = sum phi(k) v^T`` and ``z = sum phi(k)`` (phi = elu + 1), constant in size."""

    def __init__(self, cfg: TemporalConfig, dim: int, heads: int, *, kw: dict):
        self.norm = layer_norm(dim, 1e-5, **_norm_kw(kw))
        self.attn = _zero_out(Attention(dim, heads=heads, dim_head=dim // heads, bias=True, **kw))

    def init_state(self, batch: int, tokens: int) -> dict:
        H, D = self.attn.heads, self.attn.dim_head
        return {"S": jnp.zeros((batch, tokens, H, D, D)), "z": jnp.zeros((batch, tokens, H, D))}

    def __call__(self, x, state):
        q, k, v = self.attn.qkv(self.norm(x))  # [B, N, H, D]
        phi = lambda a: jax.nn.elu(a.astype(jnp.float32)) + 1  # noqa: E731
        S = state["S"] + jnp.einsum("bnhd,bnhe->bnhde", phi(k), v.astype(jnp.float32))
        z = state["z"] + phi(k)
        o = jnp.einsum("bnhd,bnhde->bnhe", phi(q), S) / (jnp.einsum("bnhd,bnhd->bnh", phi(q), z)[..., None] + 1e-6)
        return x + self.attn.project_out(o.astype(x.dtype)), {"S": S, "z": z}


TEMPORAL_MODULES: dict[str, Callable[..., nnx.Module]] = {
    "memory": MemoryModule,
    "window": WindowAttention,
    "shift": TemporalShift,
    "sliding": SlidingWindowAttention,
    "linear": LinearAttention,
}
WEIGHTLESS_MODULES = tuple(k for k, cls in TEMPORAL_MODULES.items() if not getattr(cls, "has_weights", True))


def make_temporal_modules(
    unet, config: TemporalConfig, *, rngs: nnx.Rngs, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32
) -> nnx.List:
    """One temporal module per transformer block of ``unet``, sized like that block."""
    if config.kind not in TEMPORAL_MODULES:
        raise ValueError(f"unknown temporal module {config.kind!r}; known: {sorted(TEMPORAL_MODULES)}")
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, kernel=unet.config.attention_kernel)
    dims = [(b.attn1.heads * b.attn1.dim_head, b.attn1.heads) for b in unet.transformer_blocks()]
    return nnx.List([TEMPORAL_MODULES[config.kind](config, d, h, kw=kw) for d, h in dims])


def temporal_unet(unet, config: TemporalConfig = TemporalConfig(), *, seed: int = 0,
                  dtype: Dtype | None = None, param_dtype: Dtype | None = None) -> "TemporalUNet":
    """Wrap a loaded base UNet with freshly initialised temporal modules (initialised in one
    jit). Compute and storage dtypes default to the UNet's own; the attention kernel is the
    UNet's (``unet.config.attention_kernel``)."""
    dtype = unet.dtype if dtype is None else dtype
    param_dtype = unet.conv_in.kernel.dtype if param_dtype is None else param_dtype
    temporal = init_model(lambda r: make_temporal_modules(unet, config, rngs=r, dtype=dtype, param_dtype=param_dtype),
                          seed)
    return TemporalUNet(unet, temporal, config)


class TemporalUNet(nnx.Module):
    """A base UNet (``unet.*`` parameters, loaded from diffusers weights unchanged) plus one
    temporal module per transformer block (``temporal.<site>.*``, saved and loaded separately)."""

    def __init__(self, unet, temporal: nnx.List, config: TemporalConfig):
        if len(temporal) != len(unet.transformer_blocks()):
            raise ValueError(f"{len(temporal)} temporal modules for {len(unet.transformer_blocks())} transformer blocks")
        self.unet = unet
        self.temporal = temporal
        self.config = config

    def site_tokens(self, latent_hw: tuple[int, int]) -> list[int]:
        """Tokens per site for a latent size (the factor of each site's UNet level)."""
        n = len(self.unet.config.block_out_channels)
        factors = []
        for i, b in enumerate(self.unet.down_blocks):
            factors += [2**i] * (0 if b.attentions is None else sum(len(t.transformer_blocks) for t in b.attentions))
        factors += [2 ** (n - 1)] * sum(len(t.transformer_blocks) for t in self.unet.mid_block.attentions)
        for i, b in enumerate(self.unet.up_blocks):
            factors += [2 ** (n - 1 - i)] * (0 if b.attentions is None else sum(len(t.transformer_blocks) for t in b.attentions))
        return [(latent_hw[0] // f) * (latent_hw[1] // f) for f in factors]

    def init_state(self, batch: int, latent_hw: tuple[int, int]) -> tuple[Any, ...]:
        return tuple(m.init_state(batch, n) for m, n in zip(self.temporal, self.site_tokens(latent_hw), strict=True))

    def __call__(self, sample, timestep, encoder_hidden_states, state, timestep_cond=None, remat: str | None = None):
        """-> (noise prediction NHWC, next temporal state). The state is threaded through the
        UNet as a pytree (no Python-side mutation), so any block can be rematerialised."""
        out, nxt = self.unet.forward(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond,
                                     temporal=(self.temporal, tuple(state)), remat=remat)
        # the state keeps the dtypes it was created with, whatever the compute dtype
        return out, jax.tree.map(lambda new, old: new.astype(old.dtype), nxt, tuple(state))
