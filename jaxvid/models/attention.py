"""Multi-head attention with a registry of kernels.

``xla``    : explicit softmax(QKᵀ)V written in jnp; works everywhere and is the kernel that
             attention-control code builds on where probabilities must be captured.
``blocked``: flash-style online softmax over key blocks in plain JAX (no ``[Lq, Lk]`` matrix);
             the fast kernel on CPUs.
``cudnn``  : ``jax.nn.dot_product_attention(implementation="cudnn")``, fused flash attention on
             NVIDIA GPUs only.
``auto``   : the default; picks one of the above for the backend and dtype.

Kernels take ``q [B, Lq, H, D]``, ``k``/``v`` ``[B, Lk, H, D]`` (the layout of
``jax.nn.dot_product_attention``) and return ``[B, Lq, H, D]``.
"""

from __future__ import annotations

from typing import Callable, Protocol

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.layers import Dtype, group_norm, linear


class AttentionKernel(Protocol):
    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        *,
        scale: float,
        mask: jax.Array | None = None,
        upcast: bool = False,
    ) -> jax.Array: ...


_KERNELS: dict[str, AttentionKernel] = {}


def register_attention_kernel(name: str) -> Callable[[AttentionKernel], AttentionKernel]:
    def deco(fn: AttentionKernel) -> AttentionKernel:
        _KERNELS[name] = fn
        return fn

    return deco


def attention_kernel_names() -> list[str]:
    """Registered kernels (CLI choices are derived from this)."""
    return sorted(_KERNELS)


def get_attention_kernel(name: str) -> AttentionKernel:
    try:
        return _KERNELS[name]
    except KeyError:
        raise ValueError(f"unknown attention kernel {name!r}; registered: {sorted(_KERNELS)}") from None


def attention_probs(
    q: jax.Array, k: jax.Array, *, scale: float, mask: jax.Array | None = None, upcast: bool = False
) -> jax.Array:
    """Softmax attention probabilities ``[B, H, Lq, Lk]``.

    ``upcast`` computes the logits in float32 (diffusers' ``upcast_attention``, needed by SD2.1
    in half precision); the softmax itself always runs in float32 and is cast back.
    """
    if upcast:
        q, k = q.astype(jnp.float32), k.astype(jnp.float32)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * jnp.asarray(scale, q.dtype)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


@register_attention_kernel("xla")
def xla_attention(q, k, v, *, scale, mask=None, upcast=False):
    probs = attention_probs(q, k, scale=scale, mask=mask, upcast=upcast).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


def _blocks(n: int, size: int) -> tuple[int, int]:
    """(block size, number of blocks) covering ``n`` with at most ``size`` per block."""
    size = min(size, n)
    return size, -(-n // size)


@register_attention_kernel("blocked")
def blocked_attention(q, k, v, *, scale, mask=None, upcast=False, q_block: int = 512, k_block: int = 256):
    """Flash-style attention in plain JAX: queries in blocks of ``q_block``, keys/values in blocks
    of ``k_block`` with an online softmax (running max and denominator, float32), so the
    ``[Lq, Lk]`` score matrix is never materialised; each block's scores stay in cache. Exact up
    to float rounding. ``mask`` (True = attend) must broadcast to ``[B, H, Lq, Lk]``."""
    B, Lq, H, D = q.shape
    Lk = k.shape[1]
    if Lk <= k_block:  # one key block: the explicit kernel is the same computation
        return xla_attention(q, k, v, scale=scale, mask=mask, upcast=upcast)
    qb, nq = _blocks(Lq, q_block)
    kb, nk = _blocks(Lk, k_block)
    cdt = jnp.float32 if upcast else q.dtype
    q = jnp.pad(q, ((0, 0), (0, nq * qb - Lq), (0, 0), (0, 0))).astype(cdt)
    k = jnp.pad(k, ((0, 0), (0, nk * kb - Lk), (0, 0), (0, 0))).astype(cdt)
    v = jnp.pad(v, ((0, 0), (0, nk * kb - Lk), (0, 0), (0, 0)))
    valid = jnp.arange(nk * kb) < Lk  # padded keys never attend
    full = valid[None, None, None, :]
    if mask is not None:
        mask = jnp.broadcast_to(mask, (*jnp.broadcast_shapes(mask.shape[:2], (1, 1)), Lq, Lk))
        mask = jnp.pad(mask, ((0, 0), (0, 0), (0, nq * qb - Lq), (0, nk * kb - Lk))) & full
    neg = jnp.finfo(jnp.float32).min
    k_blocks = k.reshape(B, nk, kb, H, D).swapaxes(0, 1)  # [nk, B, kb, H, D]
    v_blocks = v.reshape(B, nk, kb, H, D).swapaxes(0, 1)

    def one_query_block(i):
        qi = jax.lax.dynamic_slice_in_dim(q, i * qb, qb, axis=1)
        mi = None if mask is None else jax.lax.dynamic_slice_in_dim(mask, i * qb, qb, axis=2)

        def over_keys(carry, j):
            m, denom, acc = carry
            s = jnp.einsum("bqhd,bkhd->bhqk", qi, k_blocks[j]).astype(jnp.float32) * scale
            keep = jax.lax.dynamic_slice_in_dim(full if mi is None else mi, j * kb, kb, axis=3)
            s = jnp.where(keep, s, neg)
            m_new = jnp.maximum(m, s.max(-1))
            p = jnp.exp(s - m_new[..., None])
            corr = jnp.exp(m - m_new)
            denom = denom * corr + p.sum(-1)
            pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(v_blocks.dtype), v_blocks[j]).astype(jnp.float32)
            return (m_new, denom, acc * corr[..., None] + pv), None

        init = (jnp.full((B, H, qb), neg, jnp.float32), jnp.zeros((B, H, qb), jnp.float32),
                jnp.zeros((B, H, qb, D), jnp.float32))
        (_, denom, acc), _ = jax.lax.scan(over_keys, init, jnp.arange(nk))
        return (acc / denom[..., None]).astype(v_blocks.dtype)

    out = jax.lax.map(one_query_block, jnp.arange(nq))  # [nq, B, H, qb, D]
    return out.transpose(1, 0, 3, 2, 4).reshape(B, nq * qb, H, D)[:, :Lq]


@register_attention_kernel("cudnn")
def cudnn_attention(q, k, v, *, scale, mask=None, upcast=False):
    if jax.default_backend() != "gpu":
        raise RuntimeError("attention kernel 'cudnn' needs an NVIDIA GPU; use 'xla' on this backend")
    return jax.nn.dot_product_attention(q, k, v, scale=scale, mask=mask, implementation="cudnn")


def cudnn_supports(q: jax.Array, k: jax.Array, mask: jax.Array | None) -> bool:
    """Whether cuDNN's fused attention (forward and backward) takes these inputs: half precision,
    no mask, head dim <= 256 and a multiple of 8 (the SD VAE has one 512-wide head), key length a
    multiple of 64 (its backward refuses the text's 77 keys; seen on an H200)."""
    return (q.dtype in (jnp.bfloat16, jnp.float16) and mask is None and q.shape[-1] <= 256
            and q.shape[-1] % 8 == 0 and k.shape[1] % 64 == 0)


@register_attention_kernel("auto")
def auto_attention(q, k, v, *, scale, mask=None, upcast=False):
    """The fastest kernel measured for the backend: ``blocked`` on CPU (2-5x the explicit kernel
    at 1-4k tokens, see docs/benchmarks.md); on GPUs ``cudnn`` where :func:`cudnn_supports` the
    inputs, else ``xla``."""
    if jax.default_backend() == "cpu":
        return blocked_attention(q, k, v, scale=scale, mask=mask, upcast=upcast)
    if jax.default_backend() == "gpu" and cudnn_supports(q, k, mask):
        return cudnn_attention(q, k, v, scale=scale, mask=mask, upcast=upcast)
    return xla_attention(q, k, v, scale=scale, mask=mask, upcast=upcast)


class Attention(nnx.Module):
    """diffusers ``Attention``: ``to_q``/``to_k``/``to_v``, ``to_out.0``, optional ``group_norm``.

    Used for the UNet's self/cross attention (no qkv bias) and the VAE mid-block attention
    (qkv bias, group norm and residual). 4-D NHWC input is flattened to tokens and restored.
    """

    def __init__(
        self,
        query_dim: int,
        *,
        heads: int,
        dim_head: int,
        cross_attention_dim: int | None = None,
        bias: bool = False,
        upcast_attention: bool = False,
        norm_num_groups: int | None = None,
        eps: float = 1e-5,
        residual_connection: bool = False,
        kernel: str = "auto",
        rngs: nnx.Rngs,
        dtype: Dtype | None = jnp.float32,
        param_dtype: Dtype = jnp.float32,
    ):
        inner = heads * dim_head
        kv_dim = cross_attention_dim or query_dim
        kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        self.upcast_attention = upcast_attention
        self.residual_connection = residual_connection
        self.kernel_name = kernel
        self.group_norm = (
            group_norm(query_dim, norm_num_groups, eps, **kw) if norm_num_groups is not None else None
        )
        self.to_q = linear(query_dim, inner, use_bias=bias, **kw)
        self.to_k = linear(kv_dim, inner, use_bias=bias, **kw)
        self.to_v = linear(kv_dim, inner, use_bias=bias, **kw)
        self.to_out = nnx.List([linear(inner, query_dim, use_bias=True, **kw)])

    def split_heads(self, x: jax.Array) -> jax.Array:
        return x.reshape(*x.shape[:-1], self.heads, self.dim_head)

    def qkv(self, x: jax.Array, context: jax.Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Per-head projections ``[B, L, H, D]``; exposed so attention-control variants can
        rearrange queries/keys/values across branches and frames while reusing these weights."""
        context = x if context is None else context
        return (
            self.split_heads(self.to_q(x)),
            self.split_heads(self.to_k(context)),
            self.split_heads(self.to_v(context)),
        )

    def project_out(self, o: jax.Array) -> jax.Array:
        return self.to_out[0](o.reshape(*o.shape[:-2], self.heads * self.dim_head))

    def __call__(
        self, x: jax.Array, context: jax.Array | None = None, mask: jax.Array | None = None
    ) -> jax.Array:
        residual = x
        spatial = x.shape if x.ndim == 4 else None
        if spatial is not None:
            x = x.reshape(spatial[0], spatial[1] * spatial[2], spatial[3])
        if self.group_norm is not None:
            x = self.group_norm(x)
        q, k, v = self.qkv(x, context)
        kernel = get_attention_kernel(self.kernel_name)
        o = self.project_out(kernel(q, k, v, scale=self.scale, mask=mask, upcast=self.upcast_attention))
        if spatial is not None:
            o = o.reshape(spatial)
        return o + residual if self.residual_connection else o
