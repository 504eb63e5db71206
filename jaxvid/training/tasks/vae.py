"""Train an ``AutoencoderKL`` (the diffusers architecture) from scratch: reconstruction MSE plus
a small KL term. At export the latent scaling factor is set to 1 / (std of the latents) over
held-out frames, as Stable Diffusion's 0.18215 was chosen, so the UNet sees unit-variance latents."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvid.models.build import HostRngs, abstract_model
from jaxvid.models.vae import AutoencoderKL, VAEConfig


def frames_of(video: jax.Array) -> jax.Array:
    """uint8 ``[B, F, H, W, 3]`` -> float ``[B*F, H, W, 3]`` in [-1, 1]."""
    return video.reshape(-1, *video.shape[2:]).astype(jnp.float32) / 127.5 - 1.0


class VAETask:
    name = "vae"

    def __init__(self, config: VAEConfig, *, kl_weight: float = 1e-6, seed: int = 0):
        self.config, self.kl_weight, self.seed = config, kl_weight, seed
        self.graph = nnx.graphdef(abstract_model(lambda r: AutoencoderKL(config, rngs=r)))
        self.frozen = {}

    def init_params(self, key_data):
        return nnx.state(AutoencoderKL(self.config, rngs=HostRngs(jax.random.wrap_key_data(key_data)))).to_pure_dict()

    def loss_and_grads(self, params, frozen, batch, key):
        x = frames_of(batch["video"])

        def loss(p):
            vae = nnx.merge(self.graph, p)
            dist = vae.encode(x)
            rec = vae.decode(dist.sample(key))
            mse = jnp.mean((rec - x) ** 2)
            kl = 0.5 * jnp.mean(jnp.sum(dist.mean**2 + jnp.exp(dist.logvar) - 1 - dist.logvar, axis=-1))
            return mse + self.kl_weight * kl, (mse, kl)

        (total, (mse, kl)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return total, grads, {"mse": mse, "kl": kl}

    def model(self, params, scaling_factor: float | None = None) -> AutoencoderKL:
        vae = nnx.merge(self.graph, params)
        if scaling_factor is not None:
            vae.config = dataclasses.replace(vae.config, scaling_factor=scaling_factor)
        return vae

    def latent_std(self, params, n: int = 64) -> float:
        """Std of the latent means over ``n`` held-out toy-world frames."""
        from jaxvid.data.toyworld import ToyWorld

        size = self.config.sample_size
        world = ToyWorld(self.seed + 20_011, frames=1, size=size)
        x = jnp.asarray(np.stack([world[i]["video"][0] for i in range(n)]), jnp.float32) / 127.5 - 1.0
        return float(jnp.std(jax.jit(lambda p, x: nnx.merge(self.graph, p).encode(x).mean)(params, x)))

    def export(self, params, path: Path) -> Path:
        from jaxvid.weights.loaders import save_model

        return save_model(self.model(params, 1.0 / self.latent_std(params)), path)

    def sample(self, params, frames: int):
        """Reconstructions of held-out frames (top: input, bottom: reconstruction) and their PSNR."""
        from jaxvid.data.toyworld import ToyWorld

        world = ToyWorld(self.seed + 20_011, frames=1, size=self.config.sample_size)
        x = np.stack([world[i]["video"][0] for i in range(8)])
        rec = jax.jit(lambda p, x: nnx.merge(self.graph, p).decode(nnx.merge(self.graph, p).encode(x).mean))(
            params, jnp.asarray(x, jnp.float32) / 127.5 - 1.0)
        rec = np.asarray(jnp.round((jnp.clip(rec, -1, 1) + 1) * 127.5), np.uint8)
        mse = np.mean((rec.astype(np.float64) - x) ** 2)
        strip = np.concatenate([np.concatenate(list(x), 1), np.concatenate(list(rec), 1)])
        return strip, {"sample_psnr": 10 * np.log10(255.0**2 / max(mse, 1e-10))}
