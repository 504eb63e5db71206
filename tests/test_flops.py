"""FLOP counting with loops: XLA's cost analysis counts a loop body once, count_flops does not."""

import jax
import jax.numpy as jnp
import pytest

from jaxvid.flops import count_flops
from jaxvid.models.attention import get_attention_kernel

N = 64


def _xla_flops(fn, *args):
    cost = jax.jit(fn).lower(*args).cost_analysis()
    return (cost[0] if isinstance(cost, (list, tuple)) else cost)["flops"]


def test_matmul_scan_and_the_xla_undercount():
    x = jnp.ones((N, N))
    mm = 2 * N**3  # one N x N x N product: N^3 multiply-adds
    assert count_flops(lambda x: x @ x, x) == mm
    scanned = lambda x: jax.lax.scan(lambda c, _: (c @ x, None), x, None, length=8)[0]  # noqa: E731
    assert count_flops(scanned, x) == 8 * mm
    assert _xla_flops(scanned, x) < 2 * mm  # why count_flops exists: XLA sees one iteration


def test_gradient_with_remat_counts_the_recomputation():
    x = jnp.ones((N, N))
    f = lambda x: jnp.sum(jax.checkpoint(lambda y: jnp.tanh(y @ x))(x) @ x)  # noqa: E731
    # forward 2 products; backward 2 per product; remat recomputes the first: 7
    assert count_flops(jax.grad(f), x) == 7 * 2 * N**3


def test_convolution_and_batched_dot():
    img, w = jnp.ones((2, 16, 16, 8)), jnp.ones((3, 3, 8, 12))
    conv = lambda a: jax.lax.conv_general_dilated(a, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # noqa: E731
    assert count_flops(conv, img) == 2 * (2 * 16 * 16 * 12) * 8 * 9
    strided = lambda a: jax.lax.conv_general_dilated(a, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))  # noqa: E731
    assert count_flops(strided, img) == 2 * (2 * 8 * 8 * 12) * 8 * 9
    a, b = jnp.ones((3, 5, 7)), jnp.ones((3, 7, 11))
    assert count_flops(jnp.matmul, a, b) == 2 * 3 * 5 * 7 * 11


@pytest.mark.parametrize("kernel", ["xla", "blocked"])
def test_attention_kernels_count_the_same_work(kernel):
    B, L, H, D = 1, 1024, 2, 16
    q = jnp.ones((B, L, H, D))
    fn = lambda q: get_attention_kernel(kernel)(q, q, q, scale=D**-0.5)  # noqa: E731
    assert count_flops(fn, q) == 2 * (2 * B * H * L * L * D)  # scores and the weighted sum


def test_a_while_loop_is_refused():
    with pytest.raises(ValueError, match="static trip count"):
        count_flops(lambda x: jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] @ c[1]), (0, x))[1],
                    jnp.ones((4, 4)))
