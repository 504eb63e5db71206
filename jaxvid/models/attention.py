"""Multi-head attention with a registry of kernels.

``xla``  : explicit softmax(QKᵀ)V written in jnp; works everywhere and is the kernel that
           attention-control code builds on, because the probabilities are an explicit tensor.
``cudnn``: ``jax.nn.dot_product_attention(implementation="cudnn")``, fused flash attention on
           NVIDIA GPUs only.

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


@register_attention_kernel("cudnn")
def cudnn_attention(q, k, v, *, scale, mask=None, upcast=False):
    if jax.default_backend() != "gpu":
        raise RuntimeError("attention kernel 'cudnn' needs an NVIDIA GPU; use 'xla' on this backend")
    return jax.nn.dot_product_attention(q, k, v, scale=scale, mask=mask, implementation="cudnn")


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
        kernel: str = "xla",
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
