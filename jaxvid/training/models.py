"""The frozen model a training run starts from (``config.model``): a diffusers folder, loaded
with every weight placed straight into its shards on the mesh, or a built-in random preset."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from jaxvid.sharding import placer


def load_models(model: ml_collections.ConfigDict, mesh):
    from configs.models import get_config as model_preset
    from jaxvid.pipelines.bundle import load_pipeline
    from jaxvid.pipelines.default import random_bundle

    dt = jnp.dtype(model.dtype)
    if model.path:
        bundle = load_pipeline(model.path, dtype=dt, param_dtype=dt, attention_kernel=model.attention,
                               place=placer(mesh))
        if model.get("lora"):
            from jaxvid.weights.lora import load_lora

            load_lora(bundle.unet, model.lora, scale=model.get("lora_scale", 1.0))
        return bundle
    preset = model_preset(model.preset)
    preset.dtype = preset.param_dtype = model.dtype
    preset.attention_kernel = model.attention
    return random_bundle(preset)
