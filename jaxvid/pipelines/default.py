"""The built-in default model, used when no ``--model`` folder is given: the toy-world model that
jaxvid trains itself (``tools/build_toyworld.py``, docs/toyworld.md), shipped in
``jaxvid/assets/toyworld`` as an ordinary diffusers folder (fp16) with its LCM-LoRA and trained
temporal modules. It knows one world — coloured shapes moving over plain or textured
backgrounds, 64x64 — and edits it for real.

``random_bundle`` builds random models of a ``configs/models.py`` preset for tests and benchmarks
(host-initialised: no compilation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import jax.numpy as jnp

from configs.models import get_config
from jaxvid.models.build import random_model
from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.models.vae import AutoencoderKL, VAEConfig
from jaxvid.pipelines.bundle import ModelBundle, ModelSpec, load_pipeline, model_spec
from jaxvid.schedulers.schedule import make_schedule
from jaxvid.text import default_tokenizer

TOYWORLD_DIR = Path(__file__).resolve().parent.parent / "assets" / "toyworld"
DEFAULT_MODEL_NOTE = (
    "no --model given: using jaxvid's built-in toy-world model (64x64 coloured shapes; "
    "docs/toyworld.md). Pass --model DIR with a diffusers Stable Diffusion / LCM folder for real videos."
)


def default_model_dir() -> Path | None:
    """The built-in model's folder, or None when this checkout does not have it."""
    return TOYWORLD_DIR if (TOYWORLD_DIR / "model_index.json").exists() else None


def _require() -> Path:
    folder = default_model_dir()
    if folder is None:
        raise FileNotFoundError(f"the built-in model is missing ({TOYWORLD_DIR}); rebuild it with "
                                "`make toyworld` or pass --model DIR")
    return folder


def default_bundle(*, dtype=jnp.float32, attention_kernel: str = "auto") -> ModelBundle:
    """The built-in model with its LCM-LoRA fused (4 LCM steps, no guidance needed)."""
    from jaxvid.weights.lora import load_lora

    folder = _require()
    bundle = load_pipeline(folder, dtype=dtype, param_dtype=dtype, attention_kernel=attention_kernel)
    load_lora(bundle.unet, folder / "lcm_lora")
    return bundle.replace(source="built-in toy-world model")


def default_spec() -> ModelSpec:
    """The built-in model's :class:`ModelSpec` (configs only)."""
    return model_spec(_require())


def default_temporal(kind: str = "memory") -> Path | None:
    """The built-in model's trained temporal module of ``kind``, if it has one."""
    folder = TOYWORLD_DIR / "temporal" / kind
    return folder if (folder / "temporal_config.json").exists() else None


def random_bundle(preset: str | Mapping = "tiny", seed: int = 0) -> ModelBundle:
    """Randomly initialised models of a ``configs/models.py`` preset (or an equivalent mapping)."""
    c = get_config(preset) if isinstance(preset, str) else preset
    dtype, pdtype = jnp.dtype(c["dtype"]), jnp.dtype(c["param_dtype"])
    kw = dict(dtype=dtype, param_dtype=pdtype)
    ucfg = UNetConfig.from_dict(dict(c["unet"]), attention_kernel=c["attention_kernel"])
    vcfg = VAEConfig.from_dict(dict(c["vae"]))
    tcfg = CLIPTextConfig.from_dict(dict(c["text_encoder"]))
    return ModelBundle(
        unet=random_model(lambda r: UNet2DConditionModel(ucfg, rngs=r, **kw), seed),
        vae=random_model(lambda r: AutoencoderKL(vcfg, rngs=r, **kw), seed + 1),
        text_encoder=random_model(lambda r: CLIPTextModel(tcfg, rngs=r, **kw), seed + 2),
        tokenizer=default_tokenizer(),
        schedule=make_schedule(set_alpha_to_one=True),
        source=f"random:{c['name'] if 'name' in c else 'custom'}",
    )
