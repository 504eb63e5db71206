"""What a training task provides to the generic :class:`~jaxvid.training.trainer.Trainer`.

A task owns its networks. It splits them into *trainable* parameters (created by
``init_params`` inside a jitted, sharded init) and *frozen* arrays (placed once on the mesh),
and defines the loss and gradients of a batch ``{"video": uint8 [B, F, H, W, 3],
"ids": int32 [B, L]}``. Everything it computes is a pure function of those pytrees.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import jax
import numpy as np


class Task(Protocol):
    name: str
    frozen: Any  # pytree of arrays that never change (e.g. a frozen base model)

    def init_params(self, key_data: jax.Array) -> Any:
        """Initial trainable parameters (a pytree of arrays), from a key's raw data."""

    def loss_and_grads(self, params: Any, frozen: Any, batch: dict, key: jax.Array) -> tuple[jax.Array, Any, dict]:
        """``(loss, grads of params, aux metrics)``; aux values are arrays (logged)."""

    def export(self, params: Any, path: Path) -> Path:
        """Write the trained result where its users load it (a model folder, a LoRA file...)."""

    def sample(self, params: Any, frames: int) -> tuple[np.ndarray, dict]:
        """A picture of the current model (uint8 [H, W, 3]) and scalar metrics measured on it."""
