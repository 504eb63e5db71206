"""Train a text-to-image latent diffusion model from scratch: a ``UNet2DConditionModel`` and a CLIP
text encoder over the real CLIP BPE vocabulary, jointly, on captioned frames encoded by a frozen
autoencoder; epsilon (or v / x0, by the schedule) MSE with caption dropout for guidance."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvid.models.build import HostRngs, abstract_model
from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.pipelines.autoencode import encode_latents
from jaxvid.schedulers.schedule import add_noise, training_target
from jaxvid.training.tasks.vae import frames_of


class TextToImageTask:
    name = "t2i"

    def __init__(self, unet_config: UNetConfig, text_config: CLIPTextConfig, *, vae, tokenizer, schedule,
                 caption_dropout: float = 0.1, sample_prompts: tuple[str, ...] = (), seed: int = 0):
        from jaxvid.text import tokenize

        self.unet_config, self.text_config = unet_config, text_config
        self.vae, self.tokenizer, self.schedule = vae, tokenizer, schedule
        self.caption_dropout, self.sample_prompts, self.seed = caption_dropout, sample_prompts, seed
        self.unet_graph = nnx.graphdef(abstract_model(lambda r: UNet2DConditionModel(unet_config, rngs=r)))
        self.text_graph = nnx.graphdef(abstract_model(lambda r: CLIPTextModel(text_config, rngs=r)))
        self.vae_graph, vae_state = nnx.split(vae)
        self.frozen = vae_state.to_pure_dict()
        self.uncond_ids = jnp.asarray(tokenize(tokenizer, "", max_length=text_config.max_position_embeddings)[0])

    def init_params(self, key_data):
        rngs = HostRngs(jax.random.wrap_key_data(key_data))
        return {"unet": nnx.state(UNet2DConditionModel(self.unet_config, rngs=rngs)).to_pure_dict(),
                "text": nnx.state(CLIPTextModel(self.text_config, rngs=rngs)).to_pure_dict()}

    def loss_and_grads(self, params, frozen, batch, key):
        x = frames_of(batch["video"])
        n = x.shape[0]
        ids = jnp.repeat(batch["ids"], batch["video"].shape[1], axis=0)  # one caption per frame
        k_enc, k_t, k_noise, k_drop = jax.random.split(key, 4)
        z0 = jax.lax.stop_gradient(encode_latents(nnx.merge(self.vae_graph, frozen), x, k_enc))
        t = jax.random.randint(k_t, (n,), 0, self.schedule.num_train_timesteps)
        noise = jax.random.normal(k_noise, z0.shape)
        drop = jax.random.uniform(k_drop, (n,)) < self.caption_dropout
        ids = jnp.where(drop[:, None], self.uncond_ids[None], ids)

        def loss(p):
            context = nnx.merge(self.text_graph, p["text"])(ids).last_hidden_state
            pred = nnx.merge(self.unet_graph, p["unet"])(add_noise(self.schedule, z0, noise, t), t, context)
            return jnp.mean((pred.astype(jnp.float32) - training_target(self.schedule, z0, noise, t)) ** 2)

        value, grads = jax.value_and_grad(loss)(params)
        return value, grads, {}

    def bundle(self, params):
        from jaxvid.pipelines.bundle import ModelBundle

        return ModelBundle(unet=nnx.merge(self.unet_graph, params["unet"]), vae=self.vae,
                           text_encoder=nnx.merge(self.text_graph, params["text"]), tokenizer=self.tokenizer,
                           schedule=self.schedule, source="training")

    def export(self, params, path: Path) -> Path:
        from jaxvid.pipelines.bundle import save_pipeline

        return save_pipeline(self.bundle(params), path)

    def sample(self, params, frames: int):
        """Images for the sample prompts (8 LCM-style steps, guidance 3: the model is not distilled
        yet, so this is a preview)."""
        from jaxvid.pipelines.image import ImagePipeline

        prompts = list(self.sample_prompts) or ["a red circle moving on a blue background"]
        imgs = ImagePipeline(self.bundle(params)).txt2img(prompts, steps=8, guidance_scale=3.0, seed=self.seed)
        return np.concatenate(list(imgs), 1), {}
