"""SVDiff streaming editor: one jitted ``step(state, frame) -> (frame, state)``.

Per frame: encode (VAE or tiny AE); bring the latent to the first LCM timestep by one of
three modes; denoise ``k`` LCM steps with ``eps = (1 + lambda) eps_c - lambda eps_uc``, each
branch reading and updating its own temporal state for that step; decode. The state holds,
per denoising step and per branch, every site's temporal state: fixed shapes, so cost and
memory are constant in the stream's length.

Inversion modes:
* ``lcm``: deterministic DDIM-style inversion along the same k LCM timesteps with the base
  UNet (no temporal module) and the source prompt (the paper; k extra UNet calls);
* ``noise``: plain forward noising to the strength's first timestep (SDEdit-like; no calls);
* ``consistency``: inversion-free — a source branch is steered onto the frame's latent with
  the consistency noise ``e_cons`` and the edit branch gets ``eps_hat + e_cons - eps_src``
  (FastVideoEdit's trick applied per frame: saves the inversion's calls, adds one branch).

Throughput options (each switchable, see docs/svdiff.md):
* ``guidance_mode="rcfg"``: residual CFG — the unconditional prediction is replaced by the
  noise that produced the current latent (StreamDiffusion's self-negative RCFG), dropping the
  unconditional branch (one UNet row instead of two per step; slightly different results);
* ``stream_batch=True``: the k steps of k successive frames run as one UNet call (rows at
  different timesteps); results equal the sequential path, output is delayed by k-1 frames;
* a tiny autoencoder in the bundle (``--tiny-vae``) for encode/decode.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxvid.models.embeddings import guidance_scale_embedding
from jaxvid.models.temporal import TemporalUNet
from jaxvid.pipelines.autoencode import decode_latents, encode_latents, from_uint8, quantize
from jaxvid.pipelines.bundle import ModelBundle
from jaxvid.pipelines.sampling import step_table
from jaxvid.schedulers.lcm import lcm_invert, lcm_step, lcm_timesteps
from jaxvid.schedulers.schedule import add_noise
from jaxvid.text import encode_prompt_rows

TRACES = {"step": 0}
MODES = ("lcm", "noise", "consistency")
GUIDANCE_MODES = ("auto", "cfg", "rcfg", "embedding", "none")
NOISE_MODES = ("fresh", "fixed")


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    steps: int = 3
    original_inference_steps: int = 50
    guidance: float = 1.0  # lambda in (1 + lambda) eps_c - lambda eps_uc; 0 disables guidance
    # auto: the guidance embedding on fully distilled LCMs, else cfg (none when guidance is 0);
    # cfg: conditional + unconditional rows, each with its own memory (the paper); rcfg: residual
    # CFG, no unconditional row; embedding: lambda as the UNet's guidance embedding; none.
    guidance_mode: str = "auto"
    # fixed: the same noise for every frame (StreamDiffusion); fresh: new noise every frame. fixed is
    # the default by measurement: +3 to +5.5 dB temporal PSNR on the toy world (docs/svdiff.md)
    noise: str = "fixed"
    inversion: str = "lcm"
    strength: float = 0.6  # noise mode: share of the schedule re-run
    source_prompt: str = ""  # inversion / consistency source branch
    negative_prompt: str = ""
    stream_batch: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.inversion not in MODES:
            raise ValueError(f"inversion must be one of {MODES}, got {self.inversion!r}")
        if self.guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {GUIDANCE_MODES}, got {self.guidance_mode!r}")
        if self.noise not in NOISE_MODES:
            raise ValueError(f"noise must be one of {NOISE_MODES}, got {self.noise!r}")
        if self.guidance < 0:
            raise ValueError("guidance (lambda) must be >= 0")
        if self.steps < 1 or self.original_inference_steps < self.steps:
            raise ValueError(f"steps must be in [1, original_inference_steps={self.original_inference_steps}], "
                             f"got {self.steps}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")


@struct.dataclass
class StreamState:
    temporal: Any  # per site: arrays with leading [steps, branches]
    frame_index: jax.Array  # frames received so far
    key: jax.Array
    slots: Any = None  # stream batch: latents in flight, one slot per denoising step


@dataclasses.dataclass(frozen=True)
class _Static:
    steps: int
    branches: int  # UNet rows per step: [cond] (+ uncond under CFG) (+ source for consistency)
    uncond: bool
    rcfg: bool
    mode: str
    frame_shape: tuple[int, int, int]
    stream_batch: bool
    guidance_embed: int | None  # guidance_mode embedding: lambda enters as the guidance embedding
    fixed_noise: bool


def _layout(cfg: StreamConfig, embed_dim: int | None) -> tuple[int, bool, bool, int | None]:
    """``(rows per step, unconditional row?, residual CFG?, embedding width)`` for the guidance mode."""
    mode = cfg.guidance_mode
    if mode == "auto":
        mode = "embedding" if embed_dim else ("cfg" if cfg.guidance > 0 else "none")
    if mode == "embedding" and not embed_dim:
        raise ValueError("guidance_mode 'embedding' needs a UNet with time_cond_proj_dim (a fully distilled LCM)")
    uncond, rcfg = mode == "cfg", mode == "rcfg"
    rows = 1 + int(uncond) + int(cfg.inversion == "consistency")
    return rows, uncond, rcfg, embed_dim if mode == "embedding" else None


def _frame_keys(key: jax.Array, index: jax.Array, fixed: bool) -> tuple[jax.Array, jax.Array]:
    """Per-frame randomness, a function of the frame's index only (so both paths agree); with
    ``fixed`` noise every frame draws the same."""
    return tuple(jax.random.split(jax.random.fold_in(key, 0 if fixed else index)))


def _start(model: TemporalUNet, vae, schedule, emb, ts, frame, k_noise, S: _Static):
    """Latent of a new frame at the first timestep: ``(x, z0, x_source, residual_noise)``."""
    z0 = encode_latents(vae, frame[None]).astype(jnp.float32)  # latent arithmetic in float32
    e_s = emb[2:3]
    if S.mode == "noise":
        x = add_noise(schedule, z0, jax.random.normal(k_noise, z0.shape, z0.dtype), ts[0])
    elif S.mode == "lcm":  # base UNet, no temporal module, source prompt
        cond = _cond(jnp.float32(0.0), 1, S)
        x = lcm_invert(lambda x, t: model.unet(x, t, e_s, timestep_cond=cond), schedule, z0, ts)
    else:  # consistency: edit and source branches start from the same noise
        x = jax.random.normal(k_noise, z0.shape, z0.dtype)
    a = schedule.alpha(ts[0])
    resid = (x - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a)
    return x, z0, x, resid


def _rows(x, xs, emb, S: _Static):
    """UNet rows of one denoising step: [edit cond] (+ [edit uncond]) (+ [source])."""
    batch, ctx = [x], [emb[0:1]]
    if S.uncond:
        batch, ctx = batch + [x], ctx + [emb[1:2]]
    if S.mode == "consistency":
        batch, ctx = batch + [xs], ctx + [emb[2:3]]
    return jnp.concatenate(batch), jnp.concatenate(ctx)


def _cond(lam: jax.Array, rows: int, S: _Static) -> jax.Array | None:
    """Guidance embedding rows of a fully distilled LCM (w = lambda: CFG scale 1 + lambda)."""
    if S.guidance_embed is None:
        return None
    return jnp.broadcast_to(guidance_scale_embedding(lam, S.guidance_embed), (rows, S.guidance_embed))


def _update(schedule, out, t, prev_t, is_last, x, xs, z0, resid, lam, noise, S: _Static):
    """One LCM step from the rows' predictions; returns (x, xs, resid, denoised)."""
    out = out.astype(jnp.float32)
    eps = out[0:1]
    if S.uncond:
        eps = (1 + lam) * out[0:1] - lam * out[1:2]
    elif S.rcfg:
        eps = (1 + lam) * out[0:1] - lam * resid
    if S.mode == "consistency":
        a = schedule.alpha(t)
        eps = eps + (xs - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a) - out[-1:]
        a_prev = schedule.alpha(prev_t)
        xs = jnp.sqrt(a_prev) * z0 + jnp.sqrt(1 - a_prev) * noise
    x, den = lcm_step(schedule, eps, t, x, prev_t, noise, is_last=is_last)
    return x, xs, noise, den


@partial(jax.jit, static_argnames=("graphdef", "vae_graphdef", "static"), donate_argnames=("state",))
def _step(graphdef, params, vae_graphdef, vae_params, schedule, emb, table, state: StreamState, frame, *, static: _Static):
    TRACES["step"] += 1  # counts compilations
    model: TemporalUNet = nnx.merge(graphdef, params)
    vae = nnx.merge(vae_graphdef, vae_params)
    S, ts = static, table["t"]
    k_noise, k_loop = _frame_keys(state.key, state.frame_index, S.fixed_noise)
    x, z0, xs, resid = _start(model, vae, schedule, emb, ts, frame, k_noise, S)

    def denoise(carry, inp):
        x, xs, resid = carry
        i, t, prev_t, is_last, tstate = inp
        rows, ctx = _rows(x, xs, emb, S)
        out, tstate = model(rows, t, ctx, tstate, timestep_cond=_cond(table["lam"], rows.shape[0], S))
        noise = jax.random.normal(jax.random.fold_in(k_loop, i), x.shape, x.dtype)
        x, xs, resid, den = _update(schedule, out, t, prev_t, is_last, x, xs, z0, resid, table["lam"], noise, S)
        return (x, xs, resid), (den, tstate)

    n = ts.shape[0]
    _, (den, temporal) = jax.lax.scan(
        denoise, (x, xs, resid), (jnp.arange(n), ts, table["prev_t"], table["is_last"], state.temporal)
    )
    img = quantize(decode_latents(vae, den[-1])[0])
    return img, jnp.bool_(True), StreamState(temporal, state.frame_index + 1, state.key, state.slots)


@partial(jax.jit, static_argnames=("graphdef", "vae_graphdef", "static"), donate_argnames=("state",))
def _step_batched(graphdef, params, vae_graphdef, vae_params, schedule, emb, table, state: StreamState, frame, *,
                  static: _Static):
    """Stream batch: slot j holds the frame that arrived j calls ago, at denoising step j; all
    slots go through one UNet call. Returns the frame that finished (k-1 calls late)."""
    TRACES["step"] += 1
    model: TemporalUNet = nnx.merge(graphdef, params)
    vae = nnx.merge(vae_graphdef, vae_params)
    S, ts = static, table["t"]
    k = S.steps
    k_noise, _ = _frame_keys(state.key, state.frame_index, S.fixed_noise)
    new = _start(model, vae, schedule, emb, ts, frame, k_noise, S)
    sl = state.slots
    put0 = lambda a, v: a.at[0].set(v)  # noqa: E731
    x, z0, xs, resid = (put0(sl[name], v) for name, v in zip(("x", "z0", "xs", "resid"), new, strict=True))
    index = sl["index"].at[0].set(state.frame_index)
    valid = sl["valid"].at[0].set(True)
    # rows: for every slot its branch rows, flattened to one UNet batch
    rows, ctx = jax.vmap(lambda a, b: _rows(a, b, emb, S))(x, xs)  # [k, R, ...]
    R = rows.shape[1]
    t_rows = jnp.repeat(ts, R)
    flat_state = jax.tree.map(lambda a: a.reshape(k * a.shape[1], *a.shape[2:]), state.temporal)
    out, flat_state = model(rows.reshape(k * R, *rows.shape[2:]), t_rows, ctx.reshape(k * R, *ctx.shape[2:]), flat_state,
                            timestep_cond=_cond(table["lam"], k * R, S))
    temporal = jax.tree.map(lambda a, b: a.reshape(b.shape), flat_state, state.temporal)
    # a slot holding no frame yet must not touch its step's temporal state
    temporal = jax.tree.map(
        lambda new_, old: jnp.where(valid.reshape(k, *(1,) * (new_.ndim - 1)), new_, old), temporal, state.temporal
    )
    out = out.reshape(k, R, *out.shape[1:])

    def slot(i, o, t, prev_t, is_last, x, xs, z0, resid, idx):
        _, k_loop = _frame_keys(state.key, idx, S.fixed_noise)
        noise = jax.random.normal(jax.random.fold_in(k_loop, i), x.shape, x.dtype)
        return _update(schedule, o, t, prev_t, is_last, x, xs, z0, resid, table["lam"], noise, S)

    x, xs, resid, den = jax.vmap(slot)(jnp.arange(k), out, ts, table["prev_t"], table["is_last"], x, xs, z0, resid, index)
    img = quantize(decode_latents(vae, den[-1])[0])
    done = valid[-1]
    shift = lambda a: jnp.concatenate([jnp.zeros_like(a[:1]), a[:-1]])  # noqa: E731
    slots = {"x": shift(x), "z0": shift(z0), "xs": shift(xs), "resid": shift(resid), "index": shift(index),
             "valid": shift(valid)}
    return img, done, StreamState(temporal, state.frame_index + 1, state.key, slots)


class StreamEditor:
    """``state = editor.init_state(); out, ok, state = editor.step(state, frame)``, frame uint8
    ``[H, W, 3]``. ``ok`` is False while a stream batch is still filling (no frame finished)."""

    def __init__(self, bundle: ModelBundle, model: TemporalUNet, prompt: str, config: StreamConfig = StreamConfig(), *,
                 height: int, width: int):
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty")
        f = bundle.vae_scale * bundle.unet.config.downsample_factor
        if height % f or width % f:
            raise ValueError(f"frame size {height}x{width} must be a multiple of {f}")
        self.bundle, self.model, self.config = bundle, model, config
        self.height, self.width = height, width
        self.emb = encode_prompt_rows(bundle.text_encoder, bundle.tokenizer,
                                      [prompt, config.negative_prompt, config.source_prompt])
        ts = lcm_timesteps(config.steps, original_inference_steps=config.original_inference_steps,
                           strength=config.strength if config.inversion == "noise" else 1.0)
        self.table = {**step_table(ts), "lam": jnp.float32(config.guidance)}
        branches, uncond, rcfg, embed = _layout(config, bundle.unet.config.time_cond_proj_dim)
        self.static = _Static(len(ts), branches, uncond, rcfg, config.inversion, (height, width, 3), config.stream_batch,
                              embed, config.noise == "fixed")
        self._model = nnx.split(model)
        self._vae = nnx.split(bundle.vae)

    @property
    def latent_hw(self) -> tuple[int, int]:
        f = self.bundle.vae_scale
        return self.height // f, self.width // f

    @property
    def delay(self) -> int:
        """Frames between a frame's arrival and its output (k-1 with stream batch, else 0)."""
        return self.static.steps - 1 if self.static.stream_batch else 0

    def init_state(self) -> StreamState:
        S = self.static
        one = self.model.init_state(S.branches, self.latent_hw)
        temporal = jax.tree.map(lambda a: jnp.array(jnp.broadcast_to(a, (S.steps, *a.shape))), one)
        slots = None
        if S.stream_batch:
            h, w = self.latent_hw
            shape = (S.steps, 1, h, w, self.bundle.unet.config.in_channels)
            slots = {name: jnp.zeros(shape) for name in ("x", "z0", "xs", "resid")}  # distinct buffers (donated)
            slots.update(index=jnp.zeros(S.steps, jnp.int32), valid=jnp.zeros(S.steps, bool))
        return StreamState(temporal, jnp.int32(0), jax.random.key(self.config.seed), slots)

    def step(self, state: StreamState, frame: np.ndarray) -> tuple[jax.Array, jax.Array, StreamState]:
        frame = np.asarray(frame)
        if frame.shape != self.static.frame_shape or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame of shape {self.static.frame_shape}, got {frame.dtype} {frame.shape}")
        fn = _step_batched if self.static.stream_batch else _step
        return fn(*self._model, *self._vae, self.bundle.schedule, self.emb, self.table, state, from_uint8(frame),
                  static=self.static)

    def step_fn(self):
        """The pure step ``(state, frame in [-1, 1]) -> (state, (frame uint8, ok))`` for ``lax.scan``."""
        args = (*self._model, *self._vae, self.bundle.schedule, self.emb, self.table)
        raw = (_step_batched if self.static.stream_batch else _step).__wrapped__

        def fn(state, frame):
            out, ok, state = raw(*args, state, frame, static=self.static)
            return state, (out, ok)

        return fn
