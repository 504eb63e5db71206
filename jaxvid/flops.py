"""FLOPs of a JAX function, loops included.

XLA's ``cost_analysis()`` counts the body of a ``while`` loop once, whatever its trip count, so
any program with a ``lax.scan`` (the sampling loop over timesteps, the training scan over frames
and clips, the blocked attention kernel's loop over key blocks) is undercounted by the trip
count. :func:`count_flops` walks the traced jaxpr instead and multiplies each ``scan`` body by
its length. It counts matrix products and convolutions (2 FLOPs per multiply-add), the
convention MFU figures use; elementwise work is left out.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
from jax.extend import core


def _dot_flops(eqn) -> float:
    (lc, rc), (lb, _) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
    contract = math.prod(lhs[d] for d in lc)
    batch = math.prod(lhs[d] for d in lb)
    m = math.prod(s for d, s in enumerate(lhs) if d not in lc and d not in lb)
    n = math.prod(s for d, s in enumerate(rhs) if d not in rc and d not in eqn.params["dimension_numbers"][1][1])
    return 2.0 * batch * m * n * contract


def _conv_flops(eqn) -> float:
    out = eqn.outvars[0].aval.shape
    rhs = eqn.invars[1].aval.shape
    dn = eqn.params["dimension_numbers"]
    spec = dn.rhs_spec  # (out feature dim, in feature dim, *spatial dims) of the kernel
    kernel_in = rhs[spec[1]]
    window = math.prod(rhs[d] for d in spec[2:])
    return 2.0 * math.prod(out) * kernel_in * window


def _jaxpr_flops(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            total += _dot_flops(eqn)
        elif name == "conv_general_dilated":
            total += _conv_flops(eqn)
        elif name == "scan":
            total += eqn.params["length"] * _jaxpr_flops(eqn.params["jaxpr"].jaxpr)
        elif name == "cond":
            total += max(_jaxpr_flops(b.jaxpr) for b in eqn.params["branches"])
        elif name == "while":
            raise ValueError("count_flops: a while loop has no static trip count (use lax.scan / fori_loop "
                             "with static bounds)")
        else:
            total += sum(_jaxpr_flops(sub) for sub in _subjaxprs(eqn))
    return total


def _subjaxprs(eqn):
    """Jaxprs nested in an equation's parameters (jit, remat, custom_vjp/jvp, ...)."""
    for value in eqn.params.values():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, core.ClosedJaxpr):
                yield v.jaxpr
            elif isinstance(v, core.Jaxpr):
                yield v


def count_flops(fn: Callable, *args: Any, **kwargs: Any) -> float:
    """Matmul + convolution FLOPs of ``fn(*args, **kwargs)`` (arrays or ShapeDtypeStructs),
    every loop iteration counted."""
    return _jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
