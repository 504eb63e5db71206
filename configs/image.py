"""Sampler defaults of ``jaxvid generate`` (LCM, few steps).

    jaxvid generate --prompt "a red circle moving on a blue background" -o outputs/demo.png

``steps`` 4 and ``guidance_scale`` 1.0 are LCM-LoRA's recommended settings (1.0 = no
classifier-free guidance; values in 1-2 add a guided branch). ``original_inference_steps`` 50
is the distillation schedule every LCM release uses.
"""

from __future__ import annotations

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.steps = 4
    c.guidance_scale = 1.0
    c.original_inference_steps = 50
    c.strength = 0.5
    c.seed = 0
    c.prompt = "a red circle moving on a blue background"
    c.negative_prompt = ""
    return c
