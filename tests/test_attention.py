"""Attention kernel registry: the explicit-softmax kernel uses the same layout/scale conventions
as ``jax.nn.dot_product_attention`` (which backs the cudnn kernel on GPUs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvid.models.attention import attention_probs, get_attention_kernel


def test_xla_kernel_equals_jax_dot_product_attention():
    k = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(k[0], (2, 10, 4, 8))
    kk = jax.random.normal(k[1], (2, 7, 4, 8))
    v = jax.random.normal(k[2], (2, 7, 4, 8))
    ours = get_attention_kernel("xla")(q, kk, v, scale=0.3)
    ref = jax.nn.dot_product_attention(q, kk, v, scale=0.3, implementation="xla")
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)
    mask = jnp.tril(jnp.ones((10, 7), bool))[None, None]
    ours = get_attention_kernel("xla")(q, kk, v, scale=0.3, mask=mask)
    ref = jax.nn.dot_product_attention(q, kk, v, scale=0.3, mask=mask, implementation="xla")
    np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)


def test_probs_are_a_distribution():
    q = jax.random.normal(jax.random.key(1), (1, 5, 2, 4), jnp.bfloat16)
    p = attention_probs(q, q, scale=0.5, upcast=True)
    assert p.dtype == jnp.float32 and p.shape == (1, 2, 5, 5)
    np.testing.assert_allclose(np.asarray(p.sum(-1)), 1.0, atol=1e-6)


def test_unknown_and_unavailable_kernels():
    with pytest.raises(ValueError, match="unknown attention kernel"):
        get_attention_kernel("flash9000")
    if jax.default_backend() != "gpu":
        x = jnp.zeros((1, 4, 1, 8))
        with pytest.raises(RuntimeError, match="needs an NVIDIA GPU"):
            get_attention_kernel("cudnn")(x, x, x, scale=1.0)
