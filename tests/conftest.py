"""Shared fixtures: tiny random PyTorch reference models saved with ``save_pretrained``.

Every parity test loads these through jaxvid's public loaders, the same path users take.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Share XLA compilations between tests (and test runs): many tests compile the same programs.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.expanduser("~/.cache/jaxvid/xla-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")
# The suite's time is mostly XLA compiling tiny programs: LLVM's -O0 compiles them ~1.5x faster
# (measured on the stream tests: 170 s -> 116 s cold). It changes no arithmetic (XLA:CPU runs
# without fast-math at every level); subprocesses inherit it.
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests import factories  # noqa: E402


@pytest.fixture(scope="session")
def tiny_unet_dir(tmp_path_factory):
    return factories.save_unet(tmp_path_factory.mktemp("unet"), factories.UNET_SD1)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A whole tiny diffusers SD folder (``model_index.json``, unet, vae, text_encoder, tokenizer, scheduler)."""
    return factories.save_pipeline(tmp_path_factory.mktemp("sd"))


def nchw_to_nhwc(t) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)
