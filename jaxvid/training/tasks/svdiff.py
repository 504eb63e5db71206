"""SVDiff's training objective (paper §4.3) and its gradients, clip by clip.

A batch holds ``B`` videos of ``N`` frames, split into ``K = N / L`` clips of ``L`` frames:

* one timestep per video, shared by its frames; fresh noise (and a fresh VAE posterior sample)
  per frame; the denoising loss per frame is the MSE to the schedule's target (epsilon, v or x0);
  ``noising`` can instead give the frames what the streaming editor's memory sees (below);
* inside a clip, ``jax.lax.scan`` over frames carries the temporal state (the memory);
* the state leaving clip ``k`` enters clip ``k + 1`` through ``stop_gradient``; the memory is
  initialised *inside* the loss of the first clip, so ``w0`` and the positional FFN are trained;
* each clip's loss is differentiated on its own inside a scan over clips and the gradients are
  summed, so backpropagation holds the activations of one clip at a time (the point of
  splitting long videos) and no gradient crosses a clip boundary;
* captions are dropped to the empty prompt with probability ``caption_dropout`` (for CFG).

The frozen networks (base UNet, VAE, text encoder) only ever see ``stop_gradient`` inputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxvid.models.embeddings import guidance_scale_embedding
from jaxvid.models.temporal import TemporalConfig, TemporalUNet
from jaxvid.pipelines.autoencode import encode_latents
from jaxvid.schedulers.lcm import lcm_invert, lcm_step, lcm_timesteps
from jaxvid.schedulers.schedule import NoiseSchedule, add_noise, predict_x0_eps, training_target

REMAT = ("none", "frame", "block")
# gaussian: fresh noise per frame at a uniform timestep (the paper's objective, Eq. 4);
# fixed: one noise per video, shared by its frames (the stream's default fixed noise);
# lcm_inversion: what the stream's memory sees under its defaults: t drawn from the stream's
#   LCM timesteps; at the first (highest) one the frame's LCM inversion (base UNet, empty prompt,
#   paper §4.3 "clips after inversion"), at later ones the frame noised with the video's fixed
#   noise. The target is the noise that the latent holds, (x_t - sqrt(a) z0) / sqrt(1 - a).
#   ``inversion_share`` < 1 inverts only that share of the videos (the rest: the fixed noise).
# lcm_edit: lcm_inversion on ground-truth edit pairs (data.source="toyworld_edits"; beyond the
#   paper): the *source* frame is inverted, and the clean latent the target points to — and the one
#   later timesteps are noised from — is the *edited* frame's, under the edited caption. The stream's
#   memory is then trained on what it should output, so reconstructing the source no longer pays.
# lcm_stream: the stream itself, unrolled (edit pairs too; beyond the paper): the source frame
#   LCM-inverted, then all ``lcm_steps`` LCM steps under the stream's guidance (CFG rows
#   [edited caption; empty prompt] with ``guidance`` lambda, or the guidance embedding of a fully
#   distilled UNet), each step (and row) with its own memory, each later step fed the previous
#   step's output re-noised with the video's fixed noise; the loss is the MSE of every step's
#   denoised latent to the edited frame's. Frames are encoded by the posterior mean, as the
#   stream does; captions are not dropped (the empty prompt is the CFG row). With
#   ``inversion="consistency"`` the frame is not inverted: the stream's inversion-free mode, a
#   source row (empty prompt) steered onto the frame by the consistency noise beside the edit rows,
#   both starting from the video's fixed noise.
#   ``stream_loss`` says what every step's denoised latent is scored against: ``edit``, the edited
#   frame's latent (above); ``steady`` (a temporal-consistency loss, beyond the paper), its change
#   from the previous frame against the *source's* change (the output should move as the input
#   moves, whatever the edit) plus ``anchor_weight`` x its distance to what the same stream gives
#   without temporal modules (keep the base model's edit, lose its flicker). ``steady`` needs no
#   ground-truth edit: the edit pairs only supply the target captions.
NOISING = ("gaussian", "fixed", "lcm_inversion", "lcm_edit", "lcm_stream")
# target: MSE to the schedule's training target (the paper); x0: MSE of the clean latent the
# prediction implies, what an LCM step outputs (epsilon space weights it by a / (1 - a): 0.0047 at
# t = 999, so an edit barely counts at the stream's first step)
LOSS_SPACES = ("target", "x0")
LCM_NOISING = ("lcm_inversion", "lcm_edit", "lcm_stream")
EDIT_NOISING = ("lcm_edit", "lcm_stream")  # trained on edit pairs (data.source="toyworld_edits")
STREAM_INVERSIONS = ("lcm", "consistency")  # lcm_stream: the stream's inversion modes it can train for
STREAM_LOSSES = ("edit", "steady")  # lcm_stream: what each step's denoised latent is scored against


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Static (shape- or program-changing) settings of the objective."""

    clip_frames: int = 8
    caption_dropout: float = 0.1
    remat: str = "none"  # none | frame (each frame's UNet call) | block (each resnet / transformer block)
    remat_policy: str = "nothing_saveable"  # a jax.checkpoint_policies name
    noising: str = "gaussian"  # see NOISING
    lcm_steps: int = 3  # lcm_*: the stream's steps (its timesteps are the ones trained)
    original_inference_steps: int = 50  # lcm_*: the stream's LCM distillation schedule
    inversion_share: float = 1.0  # lcm_*: share of videos inverted at the first timestep
    loss_space: str = "target"  # see LOSS_SPACES
    guidance: float = 1.0  # lcm_stream: the stream's lambda in (1 + lambda) eps_c - lambda eps_uc
    inversion: str = "lcm"  # lcm_stream: the stream's inversion mode (StreamConfig.inversion), see STREAM_INVERSIONS
    stream_loss: str = "edit"  # lcm_stream: see STREAM_LOSSES
    anchor_weight: float = 0.5  # lcm_stream, steady: weight of the distance to the stream without temporal modules

    def __post_init__(self) -> None:
        if self.clip_frames < 1 or not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"need clip_frames >= 1 and caption_dropout in [0, 1], got {self}")
        if self.remat not in REMAT:
            raise ValueError(f"remat must be one of {REMAT}, got {self.remat!r}")
        if not hasattr(jax.checkpoint_policies, self.remat_policy):
            raise ValueError(f"unknown jax.checkpoint_policies policy {self.remat_policy!r}")
        if self.noising not in NOISING:
            raise ValueError(f"noising must be one of {NOISING}, got {self.noising!r}")
        if self.loss_space not in LOSS_SPACES:
            raise ValueError(f"loss_space must be one of {LOSS_SPACES}, got {self.loss_space!r}")
        if not 0.0 <= self.inversion_share <= 1.0:
            raise ValueError(f"inversion_share must be in [0, 1], got {self.inversion_share}")
        if self.guidance < 0:
            raise ValueError(f"guidance (lambda) must be >= 0, got {self.guidance}")
        if self.noising == "lcm_stream" and (self.loss_space != "x0" or self.caption_dropout != 0):
            raise ValueError("noising='lcm_stream' scores each LCM step's denoised latent and keeps every caption "
                             f"(the empty prompt is its CFG row): set loss_space='x0' and caption_dropout=0, got "
                             f"{self.loss_space!r} and {self.caption_dropout}")
        if self.inversion not in STREAM_INVERSIONS:
            raise ValueError(f"inversion must be one of {STREAM_INVERSIONS}, got {self.inversion!r}")
        if self.stream_loss not in STREAM_LOSSES:
            raise ValueError(f"stream_loss must be one of {STREAM_LOSSES}, got {self.stream_loss!r}")
        if (self.inversion, self.stream_loss) != ("lcm", "edit") and self.noising != "lcm_stream":
            raise ValueError(f"inversion={self.inversion!r} and stream_loss={self.stream_loss!r} are modes of "
                             f"noising='lcm_stream' only, got noising={self.noising!r}")
        if self.anchor_weight < 0:
            raise ValueError(f"anchor_weight must be >= 0, got {self.anchor_weight}")
        if not 1 <= self.lcm_steps <= self.original_inference_steps:
            raise ValueError(f"need 1 <= lcm_steps <= original_inference_steps, got {self.lcm_steps}, "
                             f"{self.original_inference_steps}")


@dataclasses.dataclass(frozen=True)
class Graphs:
    """The graph definitions of the networks (static jit arguments). The trainable parameters
    are exactly the temporal modules' (``temporal``); the base UNet, VAE and text encoder are
    frozen."""

    unet: Any
    temporal: Any
    temporal_config: TemporalConfig
    vae: Any
    text: Any

    def model(self, unet_state, temporal_params) -> TemporalUNet:
        return TemporalUNet(nnx.merge(self.unet, unet_state), nnx.merge(self.temporal, temporal_params),
                            self.temporal_config)


def state_rms(state: tuple) -> jax.Array:
    """RMS of each site's temporal state (all its float leaves): ``[sites]``. For the memory this
    is the memory's magnitude, which a residual update can let grow over a long stream."""
    def rms(site) -> jax.Array:
        leaves = [a.astype(jnp.float32) for a in jax.tree.leaves(site) if jnp.issubdtype(a.dtype, jnp.floating)]
        return jnp.sqrt(sum(jnp.sum(a**2) for a in leaves) / max(1, sum(a.size for a in leaves)))

    return jnp.stack([rms(s) for s in state])


def loss_and_grads(trainable, frozen, batch: dict, key: jax.Array, *, graphs: Graphs, schedule: NoiseSchedule,
                   uncond_ids: jax.Array, cfg: ObjectiveConfig) -> tuple[jax.Array, Any, dict]:
    """``(loss, grads of trainable, aux)`` for ``batch = {"video": uint8 [B, N, H, W, 3],
    "ids": int32 [B, L]}`` (``lcm_edit``: and ``"edited"``, like ``"video"``); ``trainable`` = the
    temporal modules' parameters, ``frozen = (base UNet state, VAE state, text encoder state)``.
    ``aux``: per-video losses ``[B]`` and the final temporal state's RMS per site."""
    video, ids, edited = batch["video"], batch["ids"], batch.get("edited")
    if (edited is not None) != (cfg.noising in EDIT_NOISING):
        raise ValueError(f"noising={cfg.noising!r}: the batch must hold 'edited' exactly for {EDIT_NOISING}")
    B, N = video.shape[:2]
    L = cfg.clip_frames
    if N % L:
        raise ValueError(f"{N} frames per video do not split into clips of {L}")
    K = N // L
    unet_state, vae_state, text_state = frozen
    vae = nnx.merge(graphs.vae, vae_state)
    k_t, k_drop, k_clips = jax.random.split(key, 3)
    k_video = jax.random.fold_in(key, 1)  # fixed / lcm_inversion: the video's noise (same key every frame)
    if cfg.noising in LCM_NOISING:
        table = jnp.asarray(lcm_timesteps(cfg.lcm_steps, original_inference_steps=cfg.original_inference_steps,
                                          num_train_timesteps=schedule.num_train_timesteps))
        t = table[jax.random.randint(k_t, (B,), 0, table.shape[0])]
        inverted_video = (t == table[0]) & jax.random.bernoulli(jax.random.fold_in(key, 2), cfg.inversion_share, (B,))
    else:
        t = jax.random.randint(k_t, (B,), 0, schedule.num_train_timesteps)
    drop = jax.random.uniform(k_drop, (B,)) < cfg.caption_dropout  # lcm_stream: caption_dropout is 0
    ids = jnp.where(drop[:, None], uncond_ids[None, :], ids)
    text = nnx.merge(graphs.text, text_state)
    context = jax.lax.stop_gradient(text(ids).last_hidden_state)
    f = vae.config.downsample_factor
    latent_hw = (video.shape[2] // f, video.shape[3] // f)
    block_remat = cfg.remat_policy if cfg.remat == "block" else None
    if cfg.noising in LCM_NOISING:
        base = nnx.merge(graphs.unet, unet_state)
        uncond = jax.lax.stop_gradient(text(uncond_ids[None]).last_hidden_state)
        empty = jnp.broadcast_to(uncond, (B, *uncond.shape[1:]))  # the stream inverts with the empty prompt
        cond = None
        if base.config.time_cond_proj_dim:  # a fully distilled LCM: invert at guidance 0, as the stream does
            cond = jnp.broadcast_to(guidance_scale_embedding(jnp.float32(0.0), base.config.time_cond_proj_dim),
                                    (B, base.config.time_cond_proj_dim))

        def base_eps(x, tt):
            return base(x, jnp.full((B,), tt), empty, timestep_cond=cond)

    stream = cfg.noising == "lcm_stream"
    consistency = stream and cfg.inversion == "consistency"
    steady = stream and cfg.stream_loss == "steady"
    # lcm_stream: UNet rows per step ([edit cond] (+ [edit uncond]) (+ [source])), and the guidance
    # embedding of a distilled UNet (every row gets it, as in the stream)
    uncond_row = stream and cfg.guidance > 0 and not base.config.time_cond_proj_dim
    rows, guide = 1 + int(uncond_row) + int(consistency), None
    if stream and base.config.time_cond_proj_dim:
        guide = jnp.broadcast_to(guidance_scale_embedding(jnp.float32(cfg.guidance), base.config.time_cond_proj_dim),
                                 (rows * B, base.config.time_cond_proj_dim))

    def init_state(model):
        """A fresh temporal state: per video, or (lcm_stream) per LCM step and row, like the stream's;
        ``steady`` also carries the previous frame's denoised latents and source latent."""
        if not stream:
            return model.init_state(B, latent_hw)
        one = model.init_state(rows * B, latent_hw)
        state = jax.tree.map(lambda a: jnp.broadcast_to(a, (cfg.lcm_steps, *a.shape)), one)
        if not steady:
            return state
        z = jnp.zeros((B, *latent_hw, base.config.in_channels), jnp.float32)
        return state, (jnp.stack([z] * cfg.lcm_steps), z, jnp.bool_(False))

    def noisy_latent(z_in, z0, k_noise):
        """``(x_t, the noise it holds)`` for one frame of every video (see NOISING): ``z0`` is
        the clean latent the target points to, ``z_in`` the one inverted (they differ for
        ``lcm_edit`` only)."""
        if cfg.noising == "gaussian":
            noise = jax.random.normal(k_noise, z0.shape, jnp.float32)
            return add_noise(schedule, z0, noise, t), noise
        noise = jax.random.normal(k_video, z0.shape, jnp.float32)
        noisy = add_noise(schedule, z0, noise, t)
        if cfg.noising == "fixed":
            return noisy, noise
        inverted = lcm_invert(base_eps, schedule, z_in, table)
        noisy = jax.lax.stop_gradient(jnp.where(inverted_video[:, None, None, None], inverted, noisy))
        a = schedule.alpha(t)[:, None, None, None]
        return noisy, (noisy - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a)

    def clip_loss(params, carried, k, clip, edited_clip, clip_key):
        """Mean loss of one clip ``[L, B, H, W, 3]`` (and its edit, or None) -> (loss, (state
        out, per-video loss))."""
        model = graphs.model(unet_state, params)
        state = jax.tree.map(lambda a, b: jnp.where(k == 0, a, b), init_state(model), carried)

        def denoise(state, noisy, tt, ctx, timestep_cond):
            return model(noisy, tt, ctx, state, timestep_cond=timestep_cond, remat=block_remat)

        if cfg.remat == "frame":  # only the UNet call: the frozen VAE encode is not worth recomputing
            denoise = jax.checkpoint(denoise, policy=getattr(jax.checkpoint_policies, cfg.remat_policy))

        def latent(frame, k_enc):
            pixels = frame.astype(jnp.float32) / 127.5 - 1.0
            return jax.lax.stop_gradient(encode_latents(vae, pixels, k_enc).astype(jnp.float32))

        def start(z_in):
            """lcm_stream: the frame at the first LCM timestep, ``(x, source branch or None)``."""
            if consistency:  # edit and source branches start from the video's fixed noise
                x = jax.random.normal(jax.random.fold_in(key, 3), z_in.shape, jnp.float32)
                return x, x
            return jax.lax.stop_gradient(lcm_invert(base_eps, schedule, z_in, table)), None

        def unroll(unet, z_in, x, xs):
            """lcm_stream: the stream's LCM steps on one frame's latent ``z_in`` from ``start(z_in)``
            with ``unet(i, rows, t, context) -> out`` -> every step's denoised latent."""
            ctx = jnp.concatenate([context] + [empty] * (rows - 1))
            dens = []
            for i in range(cfg.lcm_steps):
                tt, last = table[i], i == cfg.lcm_steps - 1
                prev_t = 0 if last else table[i + 1]
                out = unet(i, jnp.concatenate([x] * (1 + int(uncond_row)) + [xs] * int(consistency)),
                           jnp.full((rows * B,), tt), ctx).astype(jnp.float32)
                eps = (1 + cfg.guidance) * out[:B] - cfg.guidance * out[B:2 * B] if uncond_row else out[:B]
                noise = jax.random.normal(jax.random.fold_in(k_video, i), z_in.shape, jnp.float32)
                if consistency:  # the source row's error against the noise that leads back to the frame
                    a, a_prev = schedule.alpha(tt), schedule.alpha(prev_t)
                    eps = eps + (xs - jnp.sqrt(a) * z_in) / jnp.sqrt(1 - a) - out[-B:]
                    xs = jnp.sqrt(a_prev) * z_in + jnp.sqrt(1 - a_prev) * noise
                x, den = lcm_step(schedule, eps, tt, x, prev_t, noise, is_last=last)
                dens.append(den)
            return jnp.stack(dens)

        def stream_step(state, z_in, z0):
            """lcm_stream: the stream on one frame -> (state, per-video loss)."""
            mem, prev = state if steady else (state, None)
            states = []

            def with_memory(i, rows_in, tt, ctx):
                out, s = denoise(jax.tree.map(lambda a: a[i], mem), rows_in, tt, ctx, guide)
                states.append(s)
                return out

            x0 = start(z_in)  # shared with the anchor: the inversion is not run twice
            dens = unroll(with_memory, z_in, *x0)  # [steps, B, h, w, c]
            mem = jax.tree.map(lambda *a: jnp.stack(a), *states)
            if not steady:
                return mem, jnp.mean((dens - z0) ** 2, axis=(0, 2, 3, 4))
            prev_dens, prev_src, has_prev = prev
            anchor = jax.lax.stop_gradient(unroll(lambda i, rows_in, tt, ctx: base(rows_in, tt, ctx, timestep_cond=guide),
                                                  z_in, *x0))
            moved = ((dens - prev_dens) - (z_in - prev_src)) ** 2
            err = jnp.where(has_prev, moved, 0.0) + cfg.anchor_weight * (dens - anchor) ** 2
            return (mem, (dens, z_in, jnp.bool_(True))), jnp.mean(err, axis=(0, 2, 3, 4))

        def frame_step(state, inp):
            frame, edited_frame, fkey = inp
            k_enc, k_noise = jax.random.split(fkey)
            if stream:  # the stream encodes by the posterior mean
                return stream_step(state, latent(frame, None), latent(edited_frame, None))
            z_in = latent(frame, k_enc)
            z0 = z_in if edited_frame is None else latent(edited_frame, k_enc)  # one posterior draw for both
            noisy, noise = noisy_latent(z_in, z0, k_noise)
            pred, state = denoise(state, noisy, t, context, None)
            if cfg.loss_space == "x0":
                err = (predict_x0_eps(schedule, pred.astype(jnp.float32), t, noisy)[0] - z0) ** 2
            else:
                err = (pred.astype(jnp.float32) - training_target(schedule, z0, noise, t)) ** 2
            return state, jnp.mean(err, axis=(1, 2, 3))

        state, losses = jax.lax.scan(frame_step, state, (clip, edited_clip, jax.random.split(clip_key, L)))
        per_video = losses.mean(axis=0)
        return per_video.mean(), (state, per_video)

    grad_fn = jax.value_and_grad(clip_loss, has_aux=True)

    def to_clips(v):
        return None if v is None else v.reshape(B, K, L, *v.shape[2:]).transpose(1, 2, 0, 3, 4, 5)  # [K, L, B, H, W, 3]

    clips, edited_clips = to_clips(video), to_clips(edited)
    start = init_state(graphs.model(unet_state, trainable))  # its values are never used

    def over_clips(carry, inp):
        carried, gsum = carry
        k, clip, edited_clip, clip_key = inp
        (loss, (state, per_video)), g = grad_fn(trainable, carried, k, clip, edited_clip, clip_key)
        gsum = jax.tree.map(jnp.add, gsum, g)
        return (jax.lax.stop_gradient(state), gsum), (loss, per_video)

    zeros = jax.tree.map(jnp.zeros_like, trainable)
    (state, gsum), (losses, per_video) = jax.lax.scan(
        over_clips, (start, zeros), (jnp.arange(K), clips, edited_clips, jax.random.split(k_clips, K))
    )
    grads = jax.tree.map(lambda g: g / K, gsum)
    return losses.mean(), grads, {"per_video_loss": per_video.mean(axis=0), "state_rms": state_rms(state[0] if steady else state)}


class SVDiffTask:
    """Train the temporal modules of a frozen base model (SVDiff's memory or a baseline)."""

    name = "svdiff"

    def __init__(self, bundle, *, temporal: TemporalConfig, objective: ObjectiveConfig,
                 param_dtype=jnp.float32, sample_prompt: str = "", sample_steps: int = 3, seed: int = 0):
        from jaxvid.models.build import HostRngs
        from jaxvid.models.temporal import make_temporal_modules
        from jaxvid.text import tokenize

        self.bundle, self.objective, self.temporal = bundle, objective, temporal
        self.batch_keys = ("video", "ids", "edited") if objective.noising in EDIT_NOISING else ("video", "ids")
        self.sample_prompt, self.sample_steps, self.seed = sample_prompt, sample_steps, seed
        unet = bundle.unet

        def modules(rngs):
            return make_temporal_modules(unet, temporal, rngs=rngs, dtype=unet.dtype, param_dtype=param_dtype)

        self._modules = modules
        self._host_rngs = HostRngs
        temporal_graph = nnx.graphdef(nnx.eval_shape(lambda: modules(HostRngs(0))))
        unet_graph, unet_state = nnx.split(unet)
        vae_graph, vae_state = nnx.split(bundle.vae)
        text_graph, text_state = nnx.split(bundle.text_encoder)
        self.graphs = Graphs(unet_graph, temporal_graph, temporal, vae_graph, text_graph)
        self.frozen = (unet_state.to_pure_dict(), vae_state.to_pure_dict(), text_state.to_pure_dict())
        self.uncond_ids = jnp.asarray(
            tokenize(bundle.tokenizer, "", max_length=bundle.text_encoder.config.max_position_embeddings)[0])

    def init_params(self, key_data: jax.Array):
        return nnx.state(self._modules(self._host_rngs(jax.random.wrap_key_data(key_data)))).to_pure_dict()

    def loss_and_grads(self, params, frozen, batch, key):
        loss, grads, aux = loss_and_grads(params, frozen, batch, key, graphs=self.graphs,
                                          schedule=self.bundle.schedule, uncond_ids=self.uncond_ids,
                                          cfg=self.objective)
        return loss, grads, {"state_rms": aux["state_rms"]}

    def model(self, params) -> TemporalUNet:
        return self.graphs.model(self.frozen[0], params)

    def export(self, params, path):
        from jaxvid.weights.temporal import save_temporal

        return save_temporal(self.model(params), path)

    def sample(self, params, frames: int):
        """A streamed edit of a held-out toy-world clip (longer than the training videos):
        the PNG strip (source over edited) and the temporal state's RMS per site after it."""
        import numpy as np

        from jaxvid.data.toyworld import ToyWorld
        from jaxvid.pipelines.svdiff import StreamConfig, StreamEditor

        f = self.bundle.vae_scale * self.bundle.unet.config.downsample_factor
        size = max(f, (self.bundle.unet.config.sample_size or 8) * self.bundle.vae_scale)
        clip = ToyWorld(seed=self.seed + 10_007, frames=frames, size=size)[0]
        editor = StreamEditor(self.bundle, self.model(params), self.sample_prompt or clip["caption"],
                              StreamConfig(steps=self.sample_steps, inversion="noise"), height=size, width=size)
        state, outs = editor.init_state(), []
        for frame in clip["video"]:
            out, _, state = editor.step(state, frame)
            outs.append(np.asarray(out))
        idx = np.linspace(0, len(outs) - 1, 8).round().astype(int)
        strip = np.concatenate([np.concatenate(list(clip["video"][idx]), 1),
                                np.concatenate([outs[i] for i in idx], 1)])
        rms = np.asarray(state_rms(tuple(jax.tree.map(lambda a: a[:, 0], s) for s in state.temporal)))
        return strip, {"sample_state_rms": rms}
