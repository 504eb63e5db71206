"""Constructing models without paying for initialisation that is thrown away.

* :func:`abstract_model` builds the module tree with shape-only parameters (for loading weights).
* :func:`init_model` runs the modules' own initialisers as one compiled program (for weights
  that will be trained: their initial distribution matters).
* :func:`random_model` fills an abstract model with host (NumPy) random numbers: no compile at
  all, for random models whose only job is to exercise code (tests, demos, benchmarks).

All three hand the constructors :class:`HostRngs` instead of ``nnx.Rngs``. ``nnx.Rngs`` keeps
its counter in a Variable; under tracing every draw updates that Variable through a path whose
cost grows with the trace length, which made building an abstract SD1.5 UNet take seconds.
A Python counter gives each draw its own ``fold_in`` of the seed at no tracing cost.
"""

from __future__ import annotations

import itertools
from typing import Callable, Hashable, TypeVar

import jax
import numpy as np
from flax import nnx

M = TypeVar("M", bound=nnx.Module)


class HostRngs:
    """Stands in for ``nnx.Rngs`` during construction: every stream (``rngs.params()``,
    ``rngs.dropout()``...) draws ``fold_in(key, n)`` with a host-side counter ``n``."""

    def __init__(self, seed: int | jax.Array = 0):
        self.key = jax.random.key(seed) if isinstance(seed, int) else seed
        self._count = itertools.count()

    def __call__(self) -> jax.Array:
        return jax.random.fold_in(self.key, next(self._count))

    def __getattr__(self, name: str) -> Callable[[], jax.Array]:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.__call__


_ABSTRACT: dict[Hashable, tuple[nnx.GraphDef, nnx.State]] = {}


def abstract_model(factory: Callable[[nnx.Rngs], M], cache_key: Hashable | None = None) -> M:
    """Build a model without allocating or initialising its weights.

    Tracing the constructors costs about a second for a UNet, every time. With ``cache_key``
    (everything the factory depends on: module class, config, dtypes) the trace is kept for the
    process and later calls rebuild the module from it (new, independent ``Variable`` objects)."""
    if cache_key is None:
        return nnx.eval_shape(lambda: factory(HostRngs(0)))
    if cache_key not in _ABSTRACT:
        _ABSTRACT[cache_key] = nnx.split(nnx.eval_shape(lambda: factory(HostRngs(0))))
    return nnx.merge(*_ABSTRACT[cache_key], copy=True)  # copy: no Variable shared with the cache


def init_model(factory: Callable[[nnx.Rngs], M], seed: int = 0) -> M:
    """A model initialised by its own initialisers, run inside a single ``nnx.jit``."""
    return nnx.jit(lambda: factory(HostRngs(seed)))()


def random_model(factory: Callable[[nnx.Rngs], M], seed: int = 0) -> M:
    """A model with random weights drawn on the host: kernels ~ N(0, 1/fan_in), biases 0,
    norm scales 1, anything else ~ N(0, 0.02). Not the modules' own initialisers (use
    :func:`init_model` for weights that will be trained), but free of any compilation."""
    model = abstract_model(factory)
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        leaf, shape = str(path[-1]), tuple(var.shape)
        if leaf == "kernel":
            value = rng.standard_normal(shape, np.float32) / np.sqrt(max(1, int(np.prod(shape[:-1]))))
        elif leaf == "bias":
            value = np.zeros(shape, np.float32)
        elif leaf == "scale":
            value = np.ones(shape, np.float32)
        else:
            value = rng.standard_normal(shape, np.float32) * 0.02
        var.set_value(jax.numpy.asarray(value, var.dtype))
    return model
