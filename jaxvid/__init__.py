"""jaxvid: text-guided video editing with latent diffusion in JAX/Flax NNX."""

from jaxvid.weights.loaders import (
    load_clip,
    load_text_encoder,
    load_tiny_vae,
    load_tokenizer,
    load_unet,
    load_vae,
    save_model,
)
from jaxvid.weights.lora import load_lora
from jaxvid.pipelines.bundle import ModelBundle, load_pipeline, save_pipeline

__all__ = [
    "load_clip",
    "load_lora",
    "load_pipeline",
    "ModelBundle",
    "load_text_encoder",
    "load_tiny_vae",
    "load_tokenizer",
    "load_unet",
    "load_vae",
    "save_model",
    "save_pipeline",
]
__version__ = "0.1.0"
