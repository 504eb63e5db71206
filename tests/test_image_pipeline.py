"""The jitted LCM image pipeline: end-to-end parity with diffusers, compile-once, bad input."""

import numpy as np
import pytest
import torch

import jaxvid
from jaxvid.pipelines.default import random_bundle
from jaxvid.pipelines.image import TRACES, ImagePipeline


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_one_step_txt2img_matches_diffusers(tiny_model_dir, guidance):
    """With one LCM step there is no re-noising, so identical start latents must give the same
    picture through text encoder, (guided) UNet, LCM boundary condition and VAE decoder."""
    from diffusers import LCMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    lat = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    want = pipe("a red circle", num_inference_steps=1, guidance_scale=guidance, latents=lat, output_type="np").images
    ours = ImagePipeline(jaxvid.load_pipeline(tiny_model_dir))
    got = ours.txt2img("a red circle", steps=1, guidance_scale=guidance, latents=lat.numpy().transpose(0, 2, 3, 1))
    want_u8 = np.round(want * 255).astype(np.int16)
    assert got.shape == want_u8.shape
    assert np.abs(got.astype(np.int16) - want_u8).max() <= 1


def test_compiles_once_per_shape():
    p = ImagePipeline(random_bundle("tiny"))
    p.txt2img("a red circle", steps=3, guidance_scale=1.5, seed=0)
    n = TRACES["generate"]
    a = p.txt2img("a blue square on a green background", steps=3, guidance_scale=2.5, seed=7)
    b = p.txt2img("a blue square on a green background", steps=3, guidance_scale=2.5, seed=8)
    assert TRACES["generate"] == n, "new prompt/seed/guidance must not recompile"
    assert not np.array_equal(a, b), "seed must matter"
    p.img2img(a, "a red square", strength=0.5, steps=3, guidance_scale=1.5)
    m = TRACES["generate"]
    p.img2img(b, "a yellow square", strength=0.75, steps=3, guidance_scale=1.5)
    assert TRACES["generate"] == m


def test_bad_inputs():
    p = ImagePipeline(random_bundle("tiny"))
    with pytest.raises(ValueError, match="multiple of"):
        p.txt2img("x", height=100, width=128)
    with pytest.raises(ValueError, match="strength"):
        p.img2img(np.zeros((128, 128, 3), np.uint8), "x", strength=0.0)
    with pytest.raises(TypeError, match="uint8"):
        p.img2img(np.zeros((128, 128, 3), np.float32), "x")
    with pytest.raises(ValueError, match="latents must have shape"):
        p.txt2img("x", latents=np.zeros((1, 8, 8, 4), np.float32))
