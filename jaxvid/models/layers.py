"""Small building blocks shared by the model ports: activations, torch-style convs.

Everything is NHWC and every constructor takes ``dtype`` (compute) and ``param_dtype``
(storage), so one place decides how a diffusers layer maps to NNX.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

Dtype = jnp.dtype | type


def _quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "quick_gelu": _quick_gelu,
    "mish": lambda x: x * jnp.tanh(jax.nn.softplus(x)),
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Activation by its diffusers/transformers name (exact GELU unless the name says tanh)."""
    try:
        return _ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported activation {name!r}; known: {sorted(_ACTIVATIONS)}") from None


class Act(nnx.Module):
    """Parameter-free activation that can sit in an ``nnx.List`` where diffusers has one in a
    ``nn.Sequential`` (keeps the numeric indices of the following layers identical)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, x: jax.Array) -> jax.Array:
        return activation(self.name)(x)


def conv2d(
    in_ch: int,
    out_ch: int,
    kernel: int,
    *,
    rngs: nnx.Rngs,
    stride: int = 1,
    padding: int | tuple[tuple[int, int], tuple[int, int]] | None = None,
    use_bias: bool = True,
    dtype: Dtype | None = jnp.float32,
    param_dtype: Dtype = jnp.float32,
) -> nnx.Conv:
    """A Conv2d with PyTorch's symmetric padding convention (``padding=kernel//2`` by default)."""
    if padding is None:
        padding = kernel // 2
    if isinstance(padding, int):
        padding = ((padding, padding), (padding, padding))
    return nnx.Conv(
        in_ch,
        out_ch,
        (kernel, kernel),
        strides=(stride, stride),
        padding=padding,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def linear(
    in_f: int,
    out_f: int,
    *,
    rngs: nnx.Rngs,
    use_bias: bool = True,
    dtype: Dtype | None = jnp.float32,
    param_dtype: Dtype = jnp.float32,
) -> nnx.Linear:
    return nnx.Linear(in_f, out_f, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype, rngs=rngs)


def group_norm(
    channels: int,
    groups: int,
    eps: float,
    *,
    rngs: nnx.Rngs,
    dtype: Dtype | None = jnp.float32,
    param_dtype: Dtype = jnp.float32,
) -> nnx.GroupNorm:
    """GroupNorm with the two-pass variance torch uses (the fast E[x²]-E[x]² loses digits)."""
    return nnx.GroupNorm(
        channels,
        num_groups=groups,
        epsilon=eps,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def layer_norm(
    features: int,
    eps: float,
    *,
    rngs: nnx.Rngs,
    use_affine: bool = True,
    dtype: Dtype | None = jnp.float32,
    param_dtype: Dtype = jnp.float32,
) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        features,
        epsilon=eps,
        use_bias=use_affine,
        use_scale=use_affine,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Exact equivalent of ``F.interpolate(scale_factor=2, mode='nearest')`` on NHWC."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
