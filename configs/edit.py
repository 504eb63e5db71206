"""FastVideoEdit presets (the released code's defaults as starting points).

    jaxvid edit in.mp4 --preset attribute --model ./sd15 --lora ./lcm-lora-sdv1-5 \\
        --source-prompt "a red car on a road" --target-prompt "a blue car on a road" -o out.mp4

Arguments: ``attribute`` (colour/material of an object), ``object`` (swap the object),
``background`` (change the scene behind), ``style`` (whole-frame restyle: no latent blending).
Append ``,tiny`` for the built-in tiny model (128 px, 8 frames, blend mask from its 8x8
attention level). Common: 15 LCM steps, target guidance 2, source guidance 1, 8 frames per
chunk, 32 frames at 512x512, TokenFlow with one keyframe per 8 frames, shared noise.
"""

from __future__ import annotations

import ml_collections

_PRESETS = {
    "attribute": dict(self_fraction=0.6, cross_fraction=0.7, blend_threshold=0.3, blend_start_step=8, replace_scale=1.0),
    "object": dict(self_fraction=0.7, cross_fraction=0.7, blend_threshold=0.25, blend_start_step=8, replace_scale=1.5),
    "background": dict(self_fraction=0.6, cross_fraction=0.7, blend_threshold=0.6, blend_start_step=8, replace_scale=1.0),
    "style": dict(self_fraction=0.7, cross_fraction=0.7, blend_threshold=0.5, blend_start_step=None, replace_scale=1.0),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    name, *mods = (arg or "attribute").split(",")
    if name not in _PRESETS:
        raise ValueError(f"unknown edit preset {name!r}: {sorted(_PRESETS)}")
    c = ml_collections.ConfigDict()
    c.preset = name
    c.frames = 32
    c.size = 512
    c.stride = 1
    c.edit = ml_collections.ConfigDict(
        dict(
            steps=15,
            original_inference_steps=50,
            source_guidance=1.0,
            target_guidance=2.0,
            negative_prompt="",
            blend_downsample=4,
            chunk_frames=8,
            shared_noise=True,
            cf_masa=True,
            bg_masa=True,
            re_ca=True,
            source_cross_frame=False,
            tokenflow=True,
            keyframe_interval=8,
            seed=0,
            **_PRESETS[name],
        )
    )
    if "tiny" in mods:
        c.frames, c.size = 8, 128
        c.edit.steps = 4
        c.edit.blend_start_step = None if c.edit.blend_start_step is None else 3
        c.edit.blend_downsample = 2
    return c
