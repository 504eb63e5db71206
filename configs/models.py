"""Model architecture presets (diffusers config keys) for building models without a folder.

    python -c "from configs.models import get_config; print(get_config('sd15'))"

Arguments: ``sd15`` (Stable Diffusion 1.5), ``sd21`` (2.1, linear projections, upcast
attention), ``lcm_sd15`` (a fully distilled LCM such as LCM_Dreamshaper_v7:
``time_cond_proj_dim=256``), ``tiny`` (the built-in default: a few MB, runs on a CPU in
seconds, same block structure as SD), ``micro`` (two UNet levels, 4 transformer sites, a 2x VAE:
a training step compiles in seconds; for tests). Real weights always come from a local folder
(``--model DIR``); these presets build random models for shape checks, tests and benchmarks.
"""

from __future__ import annotations

import ml_collections

_SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2,
    attention_head_dim=8,
    cross_attention_dim=768,
    norm_num_groups=32,
)
_SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
_SD15_TEXT = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    arg = arg or "tiny"
    c = ml_collections.ConfigDict()
    c.name = arg
    c.dtype = "float32"
    c.param_dtype = "float32"
    c.attention_kernel = "auto"
    if arg == "sd15":
        c.unet = dict(_SD15_UNET)
        c.vae = dict(_SD_VAE)
        c.text_encoder = dict(_SD15_TEXT)
    elif arg == "lcm_sd15":
        c.unet = dict(_SD15_UNET, time_cond_proj_dim=256)
        c.vae = dict(_SD_VAE)
        c.text_encoder = dict(_SD15_TEXT)
    elif arg == "sd21":
        c.unet = dict(
            _SD15_UNET, sample_size=96, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
            use_linear_projection=True, upcast_attention=True,
        )
        c.vae = dict(_SD_VAE, sample_size=768)
        c.text_encoder = dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16, hidden_act="gelu",
            projection_dim=512,
        )
    elif arg == "tiny":
        c.unet = dict(
            sample_size=16,
            block_out_channels=(32, 64, 64),
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            layers_per_block=1,
            attention_head_dim=4,
            cross_attention_dim=64,
            norm_num_groups=16,
        )
        c.vae = dict(
            block_out_channels=(16, 32, 32, 32),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=128,
            scaling_factor=0.18215,
        )
        c.text_encoder = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    elif arg == "micro":
        c.unet = dict(
            sample_size=8, block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, attention_head_dim=2,
            cross_attention_dim=32, norm_num_groups=8,
        )
        c.vae = dict(
            block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, latent_channels=4, norm_num_groups=4,
            sample_size=16, scaling_factor=0.18215,
        )
        c.text_encoder = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    else:
        raise ValueError(f"unknown model preset {arg!r}: sd15, lcm_sd15, sd21, tiny, micro")
    return c
