"""Text-to-image and image-to-image with LCM: the whole stack (text encoder, UNet loop, VAE)
in one jitted function per mode and shape."""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvid.pipelines.autoencode import decode_latents, encode_latents, from_uint8, to_uint8
from jaxvid.pipelines.bundle import ModelBundle
from jaxvid.pipelines.sampling import guided_eps, lcm_guidance_cond, lcm_loop, step_table
from jaxvid.schedulers.lcm import lcm_timesteps
from jaxvid.schedulers.schedule import add_noise
from jaxvid.text import tokenize

TRACES = {"generate": 0}


@partial(jax.jit, static_argnames=("graphdefs", "cfg", "img2img"))
def _generate(graphdefs, states, schedule, init, ids, uncond_ids, guidance, steps, key, *, cfg, img2img):
    """init: noise ``[B,h,w,4]`` (txt2img) or images ``[B,H,W,3]`` (img2img)."""
    TRACES["generate"] += 1  # runs only while tracing: counts compilations
    unet, vae, text_encoder = (nnx.merge(g, s) for g, s in zip(graphdefs, states, strict=True))
    k_enc, k_noise, k_loop = jax.random.split(key, 3)
    context = text_encoder(ids).last_hidden_state
    uncond = text_encoder(uncond_ids).last_hidden_state if cfg else None
    if img2img:
        z0 = encode_latents(vae, init, k_enc)
        latents = add_noise(schedule, z0, jax.random.normal(k_noise, z0.shape, z0.dtype), steps["t"][0])
    else:
        latents = init
    cond = lcm_guidance_cond(unet, guidance, latents.shape[0]) if unet.config.time_cond_proj_dim else None
    eps_fn = lambda x, t: guided_eps(unet, x, t, context, uncond, guidance, cond)  # noqa: E731
    return decode_latents(vae, lcm_loop(eps_fn, schedule, latents, steps, k_loop))


class ImagePipeline:
    """LCM sampling on a :class:`ModelBundle` (an LCM UNet, or SD with LCM-LoRA fused).

    Guidance: classifier-free when ``guidance_scale > 1`` on ordinary UNets; fully distilled
    LCMs (``time_cond_proj_dim``) get the guidance embedding instead, with no second branch.
    """

    def __init__(self, bundle: ModelBundle, *, original_inference_steps: int = 50):
        self.bundle = bundle
        self.original_inference_steps = original_inference_steps
        self._graphdefs, self._states = zip(
            *(nnx.split(m) for m in (bundle.unet, bundle.vae, bundle.text_encoder)), strict=True
        )

    @property
    def default_size(self) -> int:
        return (self.bundle.unet.config.sample_size or 64) * self.bundle.vae_scale

    def _check_size(self, height: int, width: int) -> None:
        f = self.bundle.vae_scale * self.bundle.unet.config.downsample_factor
        if height % f or width % f or height <= 0 or width <= 0:
            raise ValueError(f"image size must be a positive multiple of {f} for this model, got {height}x{width}")

    def _ids(self, prompts: Sequence[str], negative: str | Sequence[str]):
        n = len(prompts)
        negative = [negative] * n if isinstance(negative, str) else list(negative)
        if len(negative) != n:
            raise ValueError(f"{len(negative)} negative prompts for {n} prompts")
        return (
            jnp.asarray(tokenize(self.bundle.tokenizer, prompts)),
            jnp.asarray(tokenize(self.bundle.tokenizer, negative)),
        )

    def _run(self, init, prompts, negative_prompt, steps, guidance_scale, seed, strength, img2img) -> np.ndarray:
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        ids, uncond_ids = self._ids(prompts, negative_prompt)
        ts = lcm_timesteps(steps, original_inference_steps=self.original_inference_steps, strength=strength)
        cfg = guidance_scale > 1.0 and self.bundle.unet.config.time_cond_proj_dim is None
        out = _generate(
            self._graphdefs, self._states, self.bundle.schedule, init, ids, uncond_ids,
            jnp.float32(guidance_scale), step_table(ts), jax.random.key(seed), cfg=cfg, img2img=img2img,
        )
        return to_uint8(out)

    def txt2img(
        self,
        prompts: str | Sequence[str],
        *,
        negative_prompt: str | Sequence[str] = "",
        height: int | None = None,
        width: int | None = None,
        steps: int = 4,
        guidance_scale: float = 1.0,
        seed: int = 0,
        latents: np.ndarray | None = None,
    ) -> np.ndarray:
        """uint8 images ``[B, H, W, 3]``, one per prompt. ``latents`` (NHWC) replaces the
        initial noise, e.g. to reproduce another implementation's run."""
        n = 1 if isinstance(prompts, str) else len(prompts)
        height, width = height or self.default_size, width or self.default_size
        self._check_size(height, width)
        f = self.bundle.vae_scale
        shape = (n, height // f, width // f, self.bundle.unet.config.in_channels)
        if latents is not None and tuple(np.shape(latents)) != shape:
            raise ValueError(f"latents must have shape {shape}, got {np.shape(latents)}")
        noise = jnp.asarray(latents) if latents is not None else jax.random.normal(jax.random.key(seed + 1), shape)
        return self._run(noise, prompts, negative_prompt, steps, guidance_scale, seed, 1.0, False)

    def img2img(
        self,
        images: np.ndarray,
        prompts: str | Sequence[str],
        *,
        strength: float = 0.5,
        negative_prompt: str | Sequence[str] = "",
        steps: int = 4,
        guidance_scale: float = 1.0,
        seed: int = 0,
    ) -> np.ndarray:
        """Edit uint8 images ``[B, H, W, 3]``; ``strength`` is how much of the schedule is re-run."""
        if not 0.0 < strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        n = 1 if isinstance(prompts, str) else len(prompts)
        if images.shape[0] != n:
            raise ValueError(f"{images.shape[0]} images for {n} prompts")
        self._check_size(images.shape[1], images.shape[2])
        return self._run(from_uint8(images), prompts, negative_prompt, steps, guidance_scale, seed, strength, True)
