"""SVDiff spatial-aware temporal memory (SVDiff paper eq. 6-7; see docs/svdiff.md).

One :class:`MemoryAttention` per UNet transformer block. The memory is ``h x w`` tokens of the
block's width. Its initial value (per video) is set by ``init``:

* ``positional`` (paper eq. 6): ``m_ij = w0 + FFN([i - h/2, j - w/2])``;
* ``learned``: one free learnable token per cell (the paper's Fig. 8 "w/o positional
  embedding" ablation done so that cells can still differ);
* ``shared``: every cell starts as ``w0`` — the cells are then interchangeable and stay equal
  forever (attention cannot tell them apart), so this is a single global token in disguise.

After the block, multi-head self-attention runs over ``[frame tokens; memory tokens]`` with a
residual: the first ``H*W`` outputs replace the frame features, the last ``h*w`` are the memory
for the next frame. The memory's residual sum is kept in float32 whatever the compute dtype
(it accumulates over the whole stream). The output projection starts at zero, so an untrained
memory UNet computes exactly what the base UNet computes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.attention import Attention
from jaxvid.models.layers import Dtype, layer_norm, linear

MEMORY_INITS = ("positional", "learned", "shared")


class MemoryAttention(nnx.Module):
    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        memory_hw: tuple[int, int] = (8, 8),
        init: str = "positional",
        pos_hidden: int = 32,
        kernel: str = "auto",
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        if init not in MEMORY_INITS:
            raise ValueError(f"memory init must be one of {MEMORY_INITS}, got {init!r}")
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.memory_hw = tuple(memory_hw)
        cells = (self.memory_hw[0] * self.memory_hw[1], dim) if init == "learned" else (dim,)
        self.w0 = nnx.Param(jax.random.normal(rngs.params(), cells, param_dtype) * 0.02)
        self.pos_fc1 = linear(2, pos_hidden, **kw) if init == "positional" else None
        self.pos_fc2 = linear(pos_hidden, dim, **kw) if init == "positional" else None
        self.norm = layer_norm(dim, 1e-5, **kw)
        self.attn = Attention(dim, heads=heads, dim_head=dim // heads, bias=True, kernel=kernel, **kw)
        out = self.attn.to_out[0]
        out.kernel.set_value(jnp.zeros_like(out.kernel[...]))
        out.bias.set_value(jnp.zeros_like(out.bias[...]))

    def initial_memory(self, batch: int) -> jax.Array:
        """``[batch, h*w, dim]`` float32: the memory every video starts from (see module doc)."""
        h, w = self.memory_hw
        dim = self.w0.shape[-1]
        mem = jnp.broadcast_to(self.w0[...].astype(jnp.float32), (h * w, dim))
        if self.pos_fc1 is not None:
            ii, jj = jnp.meshgrid(jnp.arange(h) - h / 2, jnp.arange(w) - w / 2, indexing="ij")
            pos = jnp.stack([ii.ravel(), jj.ravel()], axis=-1).astype(jnp.float32)
            mem = mem + self.pos_fc2(jax.nn.silu(self.pos_fc1(pos))).astype(jnp.float32)
        return jnp.broadcast_to(mem, (batch, h * w, dim))

    def __call__(self, x: jax.Array, memory: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [B, N, C]`` frame tokens, ``memory [B, M, C]`` -> (new frame tokens, next memory)."""
        n = x.shape[1]
        cat = jnp.concatenate([x, memory.astype(x.dtype)], axis=1)
        a = self.attn(self.norm(cat))
        return x + a[:, :n], memory + a[:, n:].astype(memory.dtype)
