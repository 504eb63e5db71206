"""Builders of tiny random reference models (torch diffusers/transformers) for parity tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

UNET_SD1 = dict(
    sample_size=16,
    block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=32,
    norm_num_groups=16,
)
UNET_SD2 = dict(
    sample_size=16,
    block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    attention_head_dim=[2, 4, 8],
    cross_attention_dim=48,
    use_linear_projection=True,
    upcast_attention=True,
    norm_num_groups=8,
)
UNET_LCM = dict(
    sample_size=16,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=1,
    transformer_layers_per_block=2,
    attention_head_dim=4,
    cross_attention_dim=32,
    time_cond_proj_dim=16,
    norm_num_groups=16,
)
VAE = dict(
    block_out_channels=(16, 32),
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    latent_channels=4,
    norm_num_groups=8,
    layers_per_block=1,
    sample_size=32,
)
TINY_VAE = dict(
    encoder_block_out_channels=(16, 16, 16),
    decoder_block_out_channels=(16, 16, 16),
    num_encoder_blocks=(1, 2, 1),
    num_decoder_blocks=(1, 2, 1),
)
CLIP_TEXT = dict(
    vocab_size=49408,  # the real CLIP BPE shipped with jaxvid
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=77,
    projection_dim=16,
)
CLIP_VISION = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
    projection_dim=16,
)


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter so zero-initialised layers (and unit norms) are exercised too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return module.eval()


def save_unet(path: Path, cfg: dict, seed: int = 0) -> Path:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    model = randomize(UNet2DConditionModel(**cfg), seed)
    model.save_pretrained(path)
    return Path(path)


def save_vae(path: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    randomize(AutoencoderKL(**VAE), seed).save_pretrained(path)
    return Path(path)


def save_tiny_vae(path: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    randomize(AutoencoderTiny(**TINY_VAE), seed).save_pretrained(path)
    return Path(path)


def save_text_encoder(path: Path, seed: int = 0, **overrides) -> Path:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    randomize(CLIPTextModel(CLIPTextConfig(**{**CLIP_TEXT, **overrides})), seed).save_pretrained(path)
    return Path(path)


def save_clip(path: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=16)
    randomize(CLIPModel(cfg), seed).save_pretrained(path)
    return Path(path)


def save_tokenizer(path: Path) -> Path:
    """The real CLIP BPE files shipped with jaxvid, copied like a diffusers ``tokenizer/`` folder."""
    import shutil

    from jaxvid.text import DEFAULT_TOKENIZER_DIR

    shutil.copytree(DEFAULT_TOKENIZER_DIR, path, dirs_exist_ok=True)
    return Path(path)


def save_pipeline(path: Path, seed: int = 0) -> Path:
    """A tiny diffusers SD folder laid out like ``runwayml/stable-diffusion-v1-5``."""
    from diffusers import LCMScheduler

    path = Path(path)
    save_unet(path / "unet", UNET_SD1, seed)
    save_vae(path / "vae", seed)
    save_text_encoder(path / "text_encoder", seed)
    save_tokenizer(path / "tokenizer")
    LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1).save_pretrained(path / "scheduler")
    (path / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "LCMScheduler"],
            }
        )
    )
    return path

