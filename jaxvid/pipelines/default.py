"""The built-in default model used when no ``--model`` folder is given.

Until the toy-world model trained by jaxvid ships, this is a tiny *randomly
initialised* SD-architecture model (``configs/models.py:tiny``) with the real CLIP tokenizer:
the whole stack runs end to end in seconds on a CPU, but its pictures are noise.
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
from configs.models import get_config
from jaxvid.models.build import random_model
from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.models.vae import AutoencoderKL, VAEConfig
from jaxvid.pipelines.bundle import ModelBundle, ModelSpec
from jaxvid.schedulers.schedule import make_schedule
from jaxvid.text import default_tokenizer

DEFAULT_MODEL_NOTE = (
    "no --model given: using jaxvid's built-in tiny RANDOM model (configs/models.py:tiny). "
    "It exercises the whole pipeline but its outputs are noise; pass --model DIR with a "
    "diffusers Stable Diffusion / LCM folder for real results."
)


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


def default_spec(preset: str = "tiny") -> ModelSpec:
    """The :class:`ModelSpec` of the built-in model, without building it."""
    c = get_config(preset)
    unet = UNetConfig.from_dict(dict(c["unet"]))
    vae = VAEConfig.from_dict(dict(c["vae"]))
    return ModelSpec(
        pixel_multiple=unet.downsample_factor * vae.downsample_factor,
        default_size=unet.sample_size * vae.downsample_factor,
        max_tokens=CLIPTextConfig.from_dict(dict(c["text_encoder"])).max_position_embeddings,
        tokenizer=default_tokenizer(),
    )
