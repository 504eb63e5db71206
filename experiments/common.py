"""Shared helpers of the benchmark scripts: timing, same-weights model pairs, result files."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

RESULTS = Path(__file__).parent / "results"  # committed results: written only with --update-results
# default, ignored by git; $JAXVID_BENCH_OUTPUTS moves it (bench_xla_flags.py gives each run its own)
OUTPUTS = Path(os.environ.get("JAXVID_BENCH_OUTPUTS") or Path(__file__).resolve().parent.parent / "outputs" / "bench")


def time_calls(fn: Callable[[], object], *, warmup: int, iters: int, sync: Callable[[object], None]) -> dict:
    """Median/min wall time (ms) of ``fn`` after ``warmup`` calls; ``sync`` waits for the result."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        sync(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sync(fn())
        times.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "warmup_s": first, "iters": iters}


def median_ms(fn: Callable[[], object], sync: Callable[[object], None], iters: int = 5) -> float:
    """Median ms of ``fn`` after one warm-up call (the op-level benchmarks' measure)."""
    return time_calls(fn, warmup=1, iters=iters, sync=sync)["median_ms"]


def torch_unet_pair(unet_config: dict, dtype: str, device: str, seed: int = 0, attention_kernel: str = "xla"):
    """A random diffusers UNet and the jaxvid UNet holding *the same* weights (copied through
    jaxvid's strict converter, the path real checkpoints take)."""
    import jax.numpy as jnp
    import torch
    from diffusers import UNet2DConditionModel as TorchUNet

    from jaxvid.models.build import abstract_model
    from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
    from jaxvid.weights.convert import load_state_into
    from jaxvid.weights.files import TensorSource

    torch.manual_seed(seed)
    ref = TorchUNet(**unet_config).eval()
    tensors = {k: v.float().numpy() for k, v in ref.state_dict().items()}
    jdt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
    cfg = UNetConfig.from_dict(unet_config, attention_kernel=attention_kernel)
    ours = load_state_into(
        abstract_model(lambda r: UNet2DConditionModel(cfg, rngs=r, dtype=jdt, param_dtype=jdt)),
        TensorSource(tensors, "torch", Path("<in-memory torch state>")),
    )
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    return ref.to(device=device, dtype=tdt), ours


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
        "jax": jax.__version__,
    }


def add_output_args(ap) -> None:
    ap.add_argument("--update-results", action="store_true",
                    help=f"write into the committed {RESULTS} instead of {OUTPUTS}")


def write_results(name: str, payload: dict, update: bool = False) -> Path:
    """JSON (and any plot beside it) to ``outputs/bench`` or, when asked, the committed results."""
    folder = RESULTS if update else OUTPUTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float))
    return path


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


def torch_vae_pair(vae_config: dict, dtype: str, device: str, seed: int = 0):
    """A random diffusers AutoencoderKL and the jaxvid one with the same weights."""
    import jax.numpy as jnp
    import torch
    from diffusers import AutoencoderKL as TorchVAE

    from jaxvid.models.build import abstract_model
    from jaxvid.models.vae import AutoencoderKL, VAEConfig
    from jaxvid.weights.convert import load_state_into
    from jaxvid.weights.files import TensorSource

    torch.manual_seed(seed)
    ref = TorchVAE(**vae_config).eval()
    jdt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[dtype]
    cfg = VAEConfig.from_dict(vae_config)
    ours = load_state_into(
        abstract_model(lambda r: AutoencoderKL(cfg, rngs=r, dtype=jdt, param_dtype=jdt)),
        TensorSource({k: v.float().numpy() for k, v in ref.state_dict().items()}, "torch", Path("<in-memory>")),
    )
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    return ref.to(device=device, dtype=tdt), ours
