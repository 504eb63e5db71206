"""Public loaders: a diffusers/transformers component folder -> a ready NNX model.

Models are first built abstractly (``nnx.eval_shape``: no random init, no memory), then every
parameter is filled from the file through the strict converter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, TypeVar

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvid.models.build import abstract_model
from jaxvid.models.clip import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel
from jaxvid.models.config import config_to_dict, read_json
from jaxvid.models.layers import Dtype
from jaxvid.models.tiny_vae import AutoencoderTiny, TinyVAEConfig
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.models.vae import AutoencoderKL, VAEConfig
from jaxvid.weights.convert import export_torch_state, load_state_into
from jaxvid.weights.errors import WeightFileError
from jaxvid.weights.files import find_weights_file, read_weights
from jaxvid.weights.tokenizer import CLIPTokenizer

M = TypeVar("M", bound=nnx.Module)

# transformers keeps ``position_ids`` as a (non-persistent in new versions) buffer.
_BUFFERS = ("position_ids",)


def _config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise WeightFileError(f"model folder not found: {folder}")
    cfg = folder / "config.json"
    if not cfg.exists():
        raise WeightFileError(f"{folder} has no config.json (is it a diffusers/transformers component folder?)")
    return read_json(cfg)


def _load(folder: Path, factory: Callable[[nnx.Rngs], M], variant: str | None, key: tuple, **kw: Any) -> M:
    """``key``: what the factory depends on (class, config, dtypes), so the module's shapes are
    traced once per process however often it is loaded."""
    model = abstract_model(factory, cache_key=key)
    return load_state_into(model, read_weights(find_weights_file(folder, variant)), **kw)


def load_unet(
    path: str | Path,
    *,
    dtype: Dtype | None = jnp.float32,
    param_dtype: Dtype = jnp.float32,
    variant: str | None = None,
    place: Callable[[str, np.ndarray], Any] | None = None,
    attention_kernel: str = "auto",
) -> UNet2DConditionModel:
    """A diffusers ``unet/`` folder -> :class:`UNet2DConditionModel`."""
    folder = Path(path)
    cfg = UNetConfig.from_dict(_config(folder), attention_kernel=attention_kernel)
    return _load(
        folder, lambda r: UNet2DConditionModel(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype), variant,
        key=(UNet2DConditionModel, cfg, dtype, param_dtype), place=place
    )


_DEPRECATED_VAE_ATTN = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_DEPRECATED_VAE_RE = re.compile(r"\.attentions\.(\d+)\.(query|key|value|proj_attn)\.")


def _vae_rename(key: str) -> str:
    """Old VAE checkpoints (including the SD1.5 release) name the mid-block attention
    ``query/key/value/proj_attn``; diffusers renames them on load, and so do we."""
    return _DEPRECATED_VAE_RE.sub(lambda m: f".attentions.{m.group(1)}.{_DEPRECATED_VAE_ATTN[m.group(2)]}.", key)


def load_vae(
    path: str | Path, *, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32, variant: str | None = None,
    place: Callable[[str, np.ndarray], Any] | None = None
) -> AutoencoderKL:
    """A diffusers ``vae/`` folder -> :class:`AutoencoderKL`."""
    folder = Path(path)
    cfg = VAEConfig.from_dict(_config(folder))
    return _load(
        folder, lambda r: AutoencoderKL(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype), variant,
        key=(AutoencoderKL, cfg, dtype, param_dtype), rename=_vae_rename,
        place=place,
    )


def load_tiny_vae(
    path: str | Path, *, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32, variant: str | None = None,
    place: Callable[[str, np.ndarray], Any] | None = None
) -> AutoencoderTiny:
    """A diffusers ``AutoencoderTiny`` (TAESD) folder -> :class:`AutoencoderTiny`."""
    folder = Path(path)
    cfg = TinyVAEConfig.from_dict(_config(folder))
    return _load(folder, lambda r: AutoencoderTiny(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype), variant,
        key=(AutoencoderTiny, cfg, dtype, param_dtype), place=place)


def _text_model_prefix(key: str) -> str:
    """transformers 5 saves ``CLIPTextModel`` without the ``text_model.`` prefix that SD
    checkpoints (and transformers 4) use; both load."""
    return key if key.startswith("text_model.") else f"text_model.{key}"


def load_text_encoder(
    path: str | Path, *, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32, variant: str | None = None,
    place: Callable[[str, np.ndarray], Any] | None = None
) -> CLIPTextModel:
    """A transformers ``CLIPTextModel`` folder (``text_encoder/``) -> :class:`CLIPTextModel`."""
    folder = Path(path)
    cfg = CLIPTextConfig.from_dict(_config(folder))
    return _load(
        folder,
        lambda r: CLIPTextModel(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype),
        variant,
        key=(CLIPTextModel, cfg, dtype, param_dtype),
        ignore=_BUFFERS,
        rename=_text_model_prefix,
        place=place,
    )


def load_clip(
    path: str | Path, *, dtype: Dtype | None = jnp.float32, param_dtype: Dtype = jnp.float32, variant: str | None = None,
    place: Callable[[str, np.ndarray], Any] | None = None
) -> CLIPModel:
    """A transformers ``CLIPModel`` folder (text + vision towers, projections) -> :class:`CLIPModel`."""
    folder = Path(path)
    cfg = CLIPConfig.from_dict(_config(folder))
    return _load(
        folder, lambda r: CLIPModel(cfg, rngs=r, dtype=dtype, param_dtype=param_dtype), variant,
        key=(CLIPModel, cfg, dtype, param_dtype), ignore=_BUFFERS,
        place=place,
    )


def load_tokenizer(path: str | Path) -> CLIPTokenizer:
    """A ``tokenizer/`` folder -> CLIP tokenizer (on ``tokenizers``; transformers is not
    imported). Either layout loads: the ``tokenizer.json`` that transformers 5 writes, or the
    CLIP BPE pair ``vocab.json`` + ``merges.txt`` of older releases (SD1.5's own folder)."""
    folder = Path(path)
    if not folder.is_dir():
        raise WeightFileError(f"tokenizer folder not found: {folder}")
    if not (folder / "tokenizer.json").exists():
        missing = [n for n in ("vocab.json", "merges.txt") if not (folder / n).exists()]
        if missing:
            raise WeightFileError(
                f"tokenizer folder {folder} has no tokenizer.json and lacks {', '.join(missing)} "
                "(a CLIP tokenizer needs one or the other)"
            )
    return CLIPTokenizer.from_folder(folder)


_CLASS_NAMES = {
    UNet2DConditionModel: ("UNet2DConditionModel", "diffusion_pytorch_model"),
    AutoencoderKL: ("AutoencoderKL", "diffusion_pytorch_model"),
    AutoencoderTiny: ("AutoencoderTiny", "diffusion_pytorch_model"),
    CLIPTextModel: ("CLIPTextModel", "model"),
    CLIPModel: ("CLIPModel", "model"),
}


def save_model(model: nnx.Module, path: str | Path, *, dtype: np.dtype | None = None) -> Path:
    """Write ``config.json`` + safetensors in the diffusers/transformers layout, loadable by both
    jaxvid's loaders and ``from_pretrained`` of the PyTorch libraries."""
    from safetensors.numpy import save_file

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    class_name, stem = _CLASS_NAMES[type(model)]
    cfg = model.config
    cfg_dict = cfg.to_dict() if hasattr(cfg, "to_dict") else config_to_dict(cfg, class_name)
    (folder / "config.json").write_text(json.dumps(cfg_dict, indent=2))
    save_file(export_torch_state(model, dtype), str(folder / f"{stem}.safetensors"), metadata={"format": "pt"})
    return folder
