"""Spatial transformer of the SD UNet (diffusers ``Transformer2DModel`` + ``BasicTransformerBlock``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from typing import Any, Callable, Protocol

from jaxvid.models.attention import Attention
from jaxvid.models.layers import Dtype, conv2d, group_norm, layer_norm, linear


class AttentionControl(Protocol):
    """Per-call attention variant (e.g. FastVideoEdit's CF-Masa/Re-CA), passed as a pytree
    argument through the UNet. It computes the attention outputs of a block from that block's
    own projections (so the same weights serve every variant) and may return tensors to capture
    (sown as ``nnx.Intermediate`` under ``<name>_<site>``)."""

    def self_attention(self, site: int, attn: Attention, h: jax.Array) -> tuple[jax.Array, dict[str, Any]]: ...

    def cross_attention(
        self, site: int, attn: Attention, h: jax.Array, context: jax.Array
    ) -> tuple[jax.Array, dict[str, Any]]: ...


Temporal = tuple[Any, tuple]
"""``(modules, states)``: one temporal module per UNet transformer block (an ``nnx.List``,
indexed by site) and their states (a tuple of pytrees, same indexing)."""


def remat_wrap(fn: Callable, policy: str | None) -> Callable:
    """``fn(*modules_and_arrays)`` rematerialised in the backward pass with a
    ``jax.checkpoint_policies`` policy (e.g. ``nothing_saveable``, ``dots_saveable``), or ``fn``
    itself for ``None``. The modules among the arguments are split into graph + state and merged
    back inside ``jax.checkpoint``, so the recomputed region is a pure function (``fn`` must not
    mutate them)."""
    if policy is None:
        return fn
    checkpoint_policy = getattr(jax.checkpoint_policies, policy)

    def call(*args):
        is_module = [isinstance(a, nnx.Module) for a in args]
        graphdef, state = nnx.split([a for a, m in zip(args, is_module, strict=True) if m])
        rest = [a for a, m in zip(args, is_module, strict=True) if not m]

        def pure(state, rest):
            modules, others = iter(nnx.merge(graphdef, state)), iter(rest)
            return fn(*(next(modules) if m else next(others) for m in is_module))

        return jax.checkpoint(pure, policy=checkpoint_policy)(state, rest)

    return call


def block_and_temporal(block, module, x, context, control, state):
    """A transformer block, then its site's temporal module (SVDiff's plug point). A pure
    function of its module and array arguments, so it can be rematerialised as one unit."""
    x = block(x, context, control)
    if module is not None:
        x, state = module(x, state)
    return x, state


class GEGLU(nnx.Module):
    """``proj`` to twice the width, then ``hidden * gelu(gate)`` (exact GELU)."""

    def __init__(self, dim_in: int, dim_out: int, *, rngs: nnx.Rngs, dtype: Dtype | None, param_dtype: Dtype):
        self.proj = linear(dim_in, dim_out * 2, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden, gate = jnp.split(self.proj(x), 2, axis=-1)
        return hidden * jax.nn.gelu(gate, approximate=False)


class Identity(nnx.Module):
    """Stands where diffusers keeps a parameter-free ``Dropout`` so list indices match (``net.2``)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x


class FeedForward(nnx.Module):
    def __init__(self, dim: int, *, mult: int = 4, rngs: nnx.Rngs, dtype: Dtype | None, param_dtype: Dtype):
        inner = dim * mult
        self.net = nnx.List(
            [
                GEGLU(dim, inner, rngs=rngs, dtype=dtype, param_dtype=param_dtype),
                Identity(),
                linear(inner, dim, rngs=rngs, dtype=dtype, param_dtype=param_dtype),
            ]
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.net:
            x = layer(x)
        return x


class BasicTransformerBlock(nnx.Module):
    """Pre-norm self-attention, cross-attention to the text, GEGLU feed-forward."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        *,
        cross_attention_dim: int,
        upcast_attention: bool = False,
        attention_kernel: str = "auto",
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        attn = dict(heads=heads, dim_head=dim_head, upcast_attention=upcast_attention, kernel=attention_kernel)
        self.norm1 = layer_norm(dim, 1e-5, **kw)
        self.attn1 = Attention(dim, **attn, **kw)
        self.norm2 = layer_norm(dim, 1e-5, **kw)
        self.attn2 = Attention(dim, cross_attention_dim=cross_attention_dim, **attn, **kw)
        self.norm3 = layer_norm(dim, 1e-5, **kw)
        self.ff = FeedForward(dim, **kw)
        self.site = -1  # position among the UNet's transformer blocks, set by the UNet

    def _sow(self, captures: dict[str, Any]) -> None:
        for name, value in captures.items():
            self.sow(nnx.Intermediate, f"{name}_{self.site:02d}", value)

    def __call__(self, x: jax.Array, context: jax.Array, control: AttentionControl | None = None) -> jax.Array:
        if control is None:
            x = x + self.attn1(self.norm1(x))
            x = x + self.attn2(self.norm2(x), context)
        else:
            a, cap = control.self_attention(self.site, self.attn1, self.norm1(x))
            self._sow(cap)
            x = x + a
            a, cap = control.cross_attention(self.site, self.attn2, self.norm2(x), context)
            self._sow(cap)
            x = x + a
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nnx.Module):
    """GroupNorm, ``proj_in`` (1x1 conv, or linear for SD2), blocks over H*W tokens, ``proj_out``, residual."""

    def __init__(
        self,
        num_attention_heads: int,
        attention_head_dim: int,
        in_channels: int,
        *,
        num_layers: int = 1,
        cross_attention_dim: int,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        upcast_attention: bool = False,
        attention_kernel: str = "auto",
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        inner = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = group_norm(in_channels, norm_num_groups, 1e-6, **kw)
        if use_linear_projection:
            self.proj_in = linear(in_channels, inner, **kw)
            self.proj_out = linear(inner, in_channels, **kw)
        else:
            self.proj_in = conv2d(in_channels, inner, 1, padding=0, **kw)
            self.proj_out = conv2d(inner, in_channels, 1, padding=0, **kw)
        self.transformer_blocks = nnx.List(
            [
                BasicTransformerBlock(
                    inner,
                    num_attention_heads,
                    attention_head_dim,
                    cross_attention_dim=cross_attention_dim,
                    upcast_attention=upcast_attention,
                    attention_kernel=attention_kernel,
                    **kw,
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(
        self,
        x: jax.Array,
        context: jax.Array,
        control: AttentionControl | None = None,
        temporal: Temporal | None = None,
        remat: str | None = None,
    ) -> tuple[jax.Array, tuple | None]:
        """-> ``(x, temporal states)``: each block's temporal module (if any) runs right after it,
        reading and returning its site's state; ``remat`` rematerialises each block + module."""
        b, h, w, c = x.shape
        residual = x
        x = self.norm(x)
        if self.use_linear_projection:
            x = self.proj_in(x.reshape(b, h * w, c))
        else:
            x = self.proj_in(x)
            x = x.reshape(b, h * w, x.shape[-1])
        step = remat_wrap(block_and_temporal, remat)
        states = None if temporal is None else temporal[1]
        for block in self.transformer_blocks:
            i = block.site
            if temporal is None:
                x, _ = step(block, None, x, context, control, None)
            else:
                x, s = step(block, temporal[0][i], x, context, control, states[i])
                states = (*states[:i], s, *states[i + 1:])
        if self.use_linear_projection:
            x = self.proj_out(x).reshape(b, h, w, c)
        else:
            x = self.proj_out(x.reshape(b, h, w, x.shape[-1]))
        return x + residual, states
