"""The model bundle: everything a pipeline needs, loaded from one diffusers model folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
from jaxvid.models.layers import Dtype
from jaxvid.models.tiny_vae import AutoencoderTiny, TinyVAEConfig
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.models.vae import AutoencoderKL, VAEConfig
from jaxvid.models.config import read_json
from jaxvid.schedulers.schedule import NoiseSchedule, make_schedule, schedule_from_config
from jaxvid.weights.errors import WeightFileError
from jaxvid.weights.loaders import load_text_encoder, load_tiny_vae, load_tokenizer, load_unet, load_vae, save_model

_REQUIRED = ("unet", "vae", "text_encoder", "tokenizer")


@dataclasses.dataclass
class ModelBundle:
    """UNet, autoencoder (KL or tiny), CLIP text encoder + tokenizer, and the noise schedule."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL | AutoencoderTiny
    text_encoder: CLIPTextModel
    tokenizer: Any
    schedule: NoiseSchedule
    source: str = ""

    @property
    def vae_scale(self) -> int:
        return self.vae.config.downsample_factor

    def replace(self, **changes: Any) -> "ModelBundle":
        return dataclasses.replace(self, **changes)


def check_model_folder(model_dir: str | Path) -> tuple[Path, dict]:
    """``(root, model_index)`` of a diffusers SD folder, or a :class:`WeightFileError` saying
    what is missing (cheap: reads no weights)."""
    root = Path(model_dir)
    if not root.is_dir():
        raise WeightFileError(f"model folder not found: {root}")
    index_file = root / "model_index.json"
    if not index_file.exists():
        raise WeightFileError(f"{root} has no model_index.json; is it a diffusers model folder?")
    index = read_json(index_file)
    missing = [c for c in _REQUIRED if c not in index or not (root / c).is_dir()]
    if missing:
        raise WeightFileError(f"{root} lacks component folder(s) {missing} named by a Stable Diffusion model_index.json")
    for comp in ("unet", "vae", "text_encoder"):
        if not (root / comp / "config.json").exists():
            raise WeightFileError(f"{root / comp} has no config.json")
    return root, index


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a run must know about a model before loading it: valid pixel sizes, the default
    size, the prompt window and the tokenizer (so bad arguments fail before any work)."""

    pixel_multiple: int  # frame sides must be multiples of this (VAE x UNet downsampling)
    default_size: int  # the UNet's sample size in pixels
    max_tokens: int  # the text encoder's window, BOS and EOS included
    tokenizer: Any


def model_spec(model_dir: str | Path) -> ModelSpec:
    """Read a model folder's configs (no weights) into a :class:`ModelSpec`; unsupported
    architecture variants are refused here already."""
    root, index = check_model_folder(model_dir)
    unet = UNetConfig.from_dict(read_json(root / "unet" / "config.json"))
    vae_cls = TinyVAEConfig if index["vae"][-1] == "AutoencoderTiny" else VAEConfig
    vae = vae_cls.from_dict(read_json(root / "vae" / "config.json"))
    text = CLIPTextConfig.from_dict(read_json(root / "text_encoder" / "config.json"))
    return ModelSpec(
        pixel_multiple=vae.downsample_factor * unet.downsample_factor,
        default_size=(unet.sample_size or 64) * vae.downsample_factor,
        max_tokens=text.max_position_embeddings,
        tokenizer=load_tokenizer(root / "tokenizer"),
    )


def load_pipeline(
    model_dir: str | Path,
    *,
    dtype: Dtype | None = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    variant: str | None = None,
    attention_kernel: str = "auto",
    tiny_vae: str | Path | None = None,
    place: Callable[[str, np.ndarray], Any] | None = None,
) -> ModelBundle:
    """Load a whole diffusers SD folder (``model_index.json`` + component folders).

    ``tiny_vae`` names a TAESD folder to use instead of the folder's own VAE (fast streaming).
    A missing ``scheduler/`` falls back to SD's scaled-linear schedule. ``place`` puts each
    weight on its devices as it is read (see :func:`jaxvid.sharding.placer`).
    """
    root, index = check_model_folder(model_dir)
    kw = dict(dtype=dtype, param_dtype=param_dtype, variant=variant, place=place)
    unet = load_unet(root / "unet", attention_kernel=attention_kernel, **kw)
    if tiny_vae is not None:
        vae = load_tiny_vae(tiny_vae, dtype=dtype, param_dtype=param_dtype, place=place)
    elif index["vae"][-1] == "AutoencoderTiny":
        vae = load_tiny_vae(root / "vae", **kw)
    else:
        vae = load_vae(root / "vae", **kw)
    sched_cfg = root / "scheduler" / "scheduler_config.json"
    schedule = schedule_from_config(read_json(sched_cfg)) if sched_cfg.exists() else make_schedule()
    return ModelBundle(
        unet=unet,
        vae=vae,
        text_encoder=load_text_encoder(root / "text_encoder", **kw),
        tokenizer=load_tokenizer(root / "tokenizer"),
        schedule=schedule,
        source=str(root),
    )


def save_pipeline(bundle: ModelBundle, path: str | Path, *, dtype: np.dtype | None = None) -> Path:
    """Write a bundle as a diffusers Stable Diffusion folder (``model_index.json``, ``unet/``,
    ``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``) that :func:`load_pipeline` and
    diffusers' ``StableDiffusionPipeline.from_pretrained`` both read; ``dtype`` e.g. float16."""
    import json

    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    for name in ("unet", "vae", "text_encoder"):
        save_model(getattr(bundle, name), root / name, dtype=dtype)
    bundle.tokenizer.save_pretrained(str(root / "tokenizer"))
    (root / "scheduler").mkdir(exist_ok=True)
    sched = {"_class_name": "LCMScheduler", "steps_offset": 1, "timestep_spacing": "leading",
             "original_inference_steps": 50, **bundle.schedule.to_config()}
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2))
    vae_class = "AutoencoderTiny" if isinstance(bundle.vae, AutoencoderTiny) else "AutoencoderKL"
    index = {
        "_class_name": "StableDiffusionPipeline",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", vae_class],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "LCMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
    }
    (root / "model_index.json").write_text(json.dumps(index, indent=2))
    return root
