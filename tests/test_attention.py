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


def _ref(q, k, v, scale, mask=None):
    """A float64 NumPy transcription of softmax(q k^T * scale) v (masked keys excluded)."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = np.einsum("bqhd,bkhd->bhqk", q, k) * scale
    if mask is not None:
        s = np.where(np.asarray(mask), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhqk,bkhd->bqhd", p, v)


@pytest.mark.parametrize("shape,kv_len,blocks", [
    ((2, 700, 3, 8), 700, (256, 128)),  # neither length divides the blocks
    ((1, 300, 2, 16), 1030, (128, 256)),  # cross-attention-like: more keys than queries
    ((3, 64, 2, 4), 600, (512, 256)),  # one query block
])
def test_blocked_kernel_equals_the_softmax_formula(shape, kv_len, blocks):
    from jaxvid.models.attention import blocked_attention

    B, L, H, D = shape
    ks = jax.random.split(jax.random.key(1), 4)
    q = jax.random.normal(ks[0], shape) * 2
    k = jax.random.normal(ks[1], (B, kv_len, H, D)) * 2
    v = jax.random.normal(ks[2], (B, kv_len, H, D))
    mask = jax.random.uniform(ks[3], (B, 1, 1, kv_len)) > 0.3  # key masks, as the temporal modules use
    mask = mask.at[..., 0].set(True)
    for m in (None, mask):
        got = jax.jit(lambda q, k, v, m=m: blocked_attention(q, k, v, scale=D**-0.5, mask=m, q_block=blocks[0],
                                                             k_block=blocks[1]))(q, k, v)
        # measured: up to 3.2e-6 on O(1) outputs (float32 online softmax vs float64); margin ~3x
        np.testing.assert_allclose(np.asarray(got), _ref(q, k, v, D**-0.5, m), rtol=1e-5, atol=1e-5)


def test_auto_kernel_is_blocked_on_cpu_and_bf16_keeps_dtype():
    from jaxvid.models.attention import auto_attention

    q = jax.random.normal(jax.random.key(0), (1, 600, 2, 8), jnp.bfloat16)
    out = get_attention_kernel("auto")(q, q, q, scale=0.3)
    assert out.dtype == jnp.bfloat16 and out.shape == q.shape
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(
            get_attention_kernel("blocked")(q, q, q, scale=0.3), np.float32))
    ref = _ref(q.astype(jnp.float32), q.astype(jnp.float32), q.astype(jnp.float32), 0.3)
    assert np.abs(np.asarray(auto_attention(q, q, q, scale=0.3, upcast=True), np.float32) - ref).max() < 3e-2


def test_auto_sends_to_cudnn_only_what_cudnn_supports():
    from jaxvid.models.attention import cudnn_supports

    x = lambda length, dim, dtype=jnp.bfloat16: jax.ShapeDtypeStruct((1, length, 8, dim), dtype)  # noqa: E731
    assert cudnn_supports(x(4096, 40), x(4096, 40), None)
    assert not cudnn_supports(x(4096, 40), x(77, 40), None)  # text cross-attention: no cuDNN backward
    assert not cudnn_supports(x(4096, 512), x(4096, 512), None)  # the SD VAE's single wide head
    assert not cudnn_supports(x(4096, 40, jnp.float32), x(4096, 40, jnp.float32), None)
    assert not cudnn_supports(x(4096, 40), x(4096, 40), jnp.ones((1, 1, 1, 4096), bool))
