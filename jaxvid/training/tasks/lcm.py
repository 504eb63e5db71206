"""Latent consistency distillation of a text-to-image model into an LCM-LoRA (LCM paper, as
LCM-LoRA was trained): the student is the teacher UNet plus a LoRA; per example a skipping-step
DDIM solver with classifier-free guidance (scale drawn from ``guidance_range``) moves the teacher
from ``t_{n+k}`` to ``t_n``; the student's consistency output at ``t_{n+k}`` is pulled towards its
own (stop-gradient) output at ``t_n`` with a pseudo-Huber loss. The LoRA is written in the
diffusers/peft file format (``pytorch_lora_weights.safetensors``), so ``--lora`` and diffusers'
``load_lora_weights`` both read it.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxvid.pipelines.autoencode import encode_latents
from jaxvid.schedulers.lcm import lcm_scalings
from jaxvid.schedulers.schedule import add_noise, predict_x0_eps
from jaxvid.training.tasks.vae import frames_of
from jaxvid.weights.convert import from_torch_layout, param_paths, torch_shape

# the modules LCM-LoRA SD1.5 adapts (matched as suffixes of torch module paths)
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")


def _get(tree: dict, path: str):
    for k in path.split("."):
        tree = tree[int(k) if k.isdigit() and int(k) in tree else k]
    return tree


def _with(tree: dict, path: str, value) -> dict:
    """A copy of nested dict ``tree`` with the leaf at dotted ``path`` replaced."""
    head, _, rest = path.partition(".")
    key = int(head) if head.isdigit() and int(head) in tree else head
    return {**tree, key: value if not rest else _with(tree[key], rest, value)}


class LCMTask:
    name = "lcm"

    def __init__(self, bundle, *, rank: int = 8, guidance_range: tuple[float, float] = (1.5, 4.0),
                 solver_steps: int = 50, huber_c: float = 0.001, sample_prompts: tuple[str, ...] = (), seed: int = 0):
        from jaxvid.text import tokenize

        if rank < 1 or solver_steps < 2 or guidance_range[0] > guidance_range[1]:
            raise ValueError(f"bad LCM settings: rank {rank}, solver_steps {solver_steps}, guidance {guidance_range}")
        self.bundle, self.rank, self.w_range, self.huber_c = bundle, rank, tuple(guidance_range), huber_c
        self.sample_prompts, self.seed = sample_prompts, seed
        self.stride = bundle.schedule.num_train_timesteps // solver_steps  # k: the skipping step
        self.solver_steps = solver_steps
        self.unet_graph, unet_state = nnx.split(bundle.unet)
        self.text_graph, text_state = nnx.split(bundle.text_encoder)
        self.vae_graph, vae_state = nnx.split(bundle.vae)
        self.frozen = (unet_state.to_pure_dict(), text_state.to_pure_dict(), vae_state.to_pure_dict())
        kernels = {p[: -len(".kernel")]: (p, v.shape) for p, v in param_paths(bundle.unet).items() if p.endswith(".kernel")}
        self.targets = {m: kernels[m] for m in sorted(kernels) if any(m == t or m.endswith("." + t) for t in LORA_TARGETS)}
        if not self.targets:
            raise ValueError("the UNet has none of the LoRA target modules")
        self.uncond_ids = jnp.asarray(
            tokenize(bundle.tokenizer, "", max_length=bundle.text_encoder.config.max_position_embeddings)[0])

    def init_params(self, key_data):
        """Per target module ``A`` [rank, fan_in] (scaled normal) and ``B`` [out, rank] = 0, in the
        PyTorch layout of the LoRA file: the student starts equal to the teacher."""
        key = jax.random.wrap_key_data(key_data)
        params = {}
        for i, (module, (path, shape)) in enumerate(self.targets.items()):
            out, *fan = torch_shape(path, shape)
            fan_in = int(np.prod(fan))
            a = jax.random.normal(jax.random.fold_in(key, i), (self.rank, fan_in)) / np.sqrt(fan_in)
            params[module] = {"A": a, "B": jnp.zeros((out, self.rank))}
        return params

    def student_state(self, params, unet_state):
        """The teacher's UNet state with every target kernel plus its LoRA update (alpha = rank)."""
        for module, (path, shape) in self.targets.items():
            delta = (params[module]["B"] @ params[module]["A"]).reshape(torch_shape(path, shape))
            w = _get(unet_state, path)
            unet_state = _with(unet_state, path, w + from_torch_layout(path, delta).astype(w.dtype))
        return unet_state

    def loss_and_grads(self, params, frozen, batch, key):
        unet_state, text_state, vae_state = frozen
        s = self.bundle.schedule
        x = frames_of(batch["video"])
        n = x.shape[0]
        ids = jnp.repeat(batch["ids"], batch["video"].shape[1], axis=0)
        k_enc, k_i, k_noise, k_w = jax.random.split(key, 4)
        z0 = encode_latents(nnx.merge(self.vae_graph, vae_state), x, k_enc)
        text = nnx.merge(self.text_graph, text_state)
        cond = text(ids).last_hidden_state
        uncond = text(jnp.broadcast_to(self.uncond_ids, ids.shape)).last_hidden_state
        # solver points t_n = k (n+1) - 1; train on (t_{n+1}, t_n) pairs with t_{n+1} = t_n + k
        i = jax.random.randint(k_i, (n,), 0, self.solver_steps)
        t = (i + 1) * self.stride - 1
        t_prev = jnp.maximum(t - self.stride, -1)  # -1: the final alpha (clean sample)
        xt = add_noise(s, z0, jax.random.normal(k_noise, z0.shape), t)
        w = jax.random.uniform(k_w, (n, 1, 1, 1), minval=self.w_range[0], maxval=self.w_range[1])
        teacher = nnx.merge(self.unet_graph, unet_state)
        both = teacher(jnp.concatenate([xt, xt]), jnp.concatenate([t, t]), jnp.concatenate([cond, uncond]))
        e_c, e_u = jnp.split(both.astype(jnp.float32), 2)
        x0_t, eps_t = predict_x0_eps(s, e_u + w * (e_c - e_u), t, xt)
        a_prev = s.alpha(t_prev)[:, None, None, None]
        x_prev = jnp.sqrt(a_prev) * x0_t + jnp.sqrt(1 - a_prev) * eps_t  # DDIM step t -> t_prev
        x_prev = jax.lax.stop_gradient(x_prev)

        def consistency(p, sample, tt):
            out = nnx.merge(self.unet_graph, self.student_state(p, unet_state))(sample, tt, cond)
            x0, _ = predict_x0_eps(s, out.astype(jnp.float32), tt, sample)
            c_skip, c_out = lcm_scalings(tt)
            return c_skip[:, None, None, None] * sample + c_out[:, None, None, None] * x0

        target = jax.lax.stop_gradient(consistency(params, x_prev, jnp.maximum(t_prev, 0)))

        def loss(p):
            d = consistency(p, xt, t) - target
            return jnp.mean(jnp.sqrt(jnp.mean(d**2, axis=(1, 2, 3)) + self.huber_c**2) - self.huber_c)

        value, grads = jax.value_and_grad(loss)(params)
        return value, grads, {}

    def lora_tensors(self, params) -> dict[str, np.ndarray]:
        """The LoRA in diffusers/peft keys: ``unet.<module>.lora_A.weight`` / ``lora_B.weight``."""
        out = {}
        for module, (path, shape) in self.targets.items():
            tshape = torch_shape(path, shape)
            a, b = np.asarray(params[module]["A"], np.float32), np.asarray(params[module]["B"], np.float32)
            conv = len(tshape) == 4
            out[f"unet.{module}.lora_A.weight"] = a.reshape(self.rank, *tshape[1:]) if conv else a
            out[f"unet.{module}.lora_B.weight"] = b.reshape(*b.shape, 1, 1) if conv else b
        return out

    def export(self, params, path: Path) -> Path:
        from safetensors.numpy import save_file

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.astype(np.float16) for k, v in self.lora_tensors(jax.device_get(params)).items()}
        save_file(tensors, str(folder / "pytorch_lora_weights.safetensors"), metadata={"format": "pt"})
        return folder

    def sample(self, params, frames: int):
        """4-step LCM images of the sample prompts with the LoRA fused (guidance 1: none)."""
        from jaxvid.pipelines.image import ImagePipeline

        student = self.bundle.replace(unet=nnx.merge(self.unet_graph, self.student_state(
            jax.device_get(params), jax.device_get(self.frozen[0]))))
        prompts = list(self.sample_prompts) or ["a red circle moving on a blue background"]
        imgs = ImagePipeline(student).txt2img(prompts, steps=4, guidance_scale=1.0, seed=self.seed)
        return np.concatenate(list(imgs), 1), {}
