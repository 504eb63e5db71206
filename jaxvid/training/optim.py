"""The optimizer of the trainable (temporal) parameters, built with optax from the config."""

from __future__ import annotations

import dataclasses

import jax
import optax

SCHEDULES = ("constant", "cosine", "linear")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-4
    schedule: str = "constant"  # constant | cosine (decay to end_fraction) | linear
    warmup_steps: int = 0
    end_fraction: float = 0.0  # final learning rate as a fraction of the peak (cosine / linear)
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-2  # AdamW; applied to kernels only (not biases, norms or memory tokens)
    clip_norm: float | None = 1.0  # global-norm gradient clipping; None disables

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.learning_rate <= 0 or self.warmup_steps < 0 or not 0 <= self.end_fraction <= 1:
            raise ValueError(f"bad optimizer config {self}")
        if self.clip_norm is not None and self.clip_norm <= 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")


def learning_rate(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    peak, warm = cfg.learning_rate, cfg.warmup_steps
    decay = max(1, total_steps - warm)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay, alpha=cfg.end_fraction)
    else:
        main = optax.linear_schedule(peak, peak * cfg.end_fraction, decay)
    if warm == 0:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, peak, warm), main], [warm])


def _decay_mask(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: str(getattr(path[-1], "key", "")) == "kernel", params)


def make_optimizer(cfg: OptimConfig, total_steps: int) -> optax.GradientTransformation:
    adamw = optax.adamw(learning_rate(cfg, total_steps), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                        weight_decay=cfg.weight_decay, mask=_decay_mask)
    return adamw if cfg.clip_norm is None else optax.chain(optax.clip_by_global_norm(cfg.clip_norm), adamw)
