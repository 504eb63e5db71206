"""Constructing models without paying for eager initialisation.

``abstract_model`` builds the module tree with shape-only parameters (for loading weights);
``init_model`` runs the whole random initialisation as one compiled program instead of one
dispatch per parameter; with the persistent compilation cache a repeat run skips the compile.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from flax import nnx

M = TypeVar("M", bound=nnx.Module)


def abstract_model(factory: Callable[[nnx.Rngs], M]) -> M:
    """Build a model without allocating or initialising its weights."""
    return nnx.eval_shape(lambda: factory(nnx.Rngs(0)))


def init_model(factory: Callable[[nnx.Rngs], M], seed: int = 0) -> M:
    """Randomly initialised model; the initialisers run inside a single ``nnx.jit``."""
    return nnx.jit(lambda: factory(nnx.Rngs(seed)))()
