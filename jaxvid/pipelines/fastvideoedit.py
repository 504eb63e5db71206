"""FastVideoEdit: inversion-free three-branch video editing with a consistency model.

One denoising step of the whole video (every chunk, TokenFlow passes, latent blending) is one
jitted function, driven by a host loop over the steps (so progress needs no host callback and
the compiled step goes to the persistent compilation cache); prompts, seeds, guidance scales,
fractions and thresholds are array arguments, so a new edit of the same video shape never
recompiles.
"""

from __future__ import annotations

import dataclasses
import time
from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxvid.control.align import align_prompts
from jaxvid.control.blend import blend_mask
from jaxvid.control.fastvideoedit import EditControl, TokenFlowInputs
from jaxvid.control.tokenflow import neighbours, pick_keyframes
from jaxvid.models.embeddings import guidance_scale_embedding
from jaxvid.pipelines.autoencode import decode_latents, encode_latents, from_uint8, to_uint8
from jaxvid.pipelines.bundle import ModelBundle
from jaxvid.schedulers.lcm import lcm_timesteps
from jaxvid.text import encode_prompt_rows

TRACES = {"edit": 0}


@dataclasses.dataclass(frozen=True)
class FastVideoEditConfig:
    """Every knob of the method; defaults are the released code's (see ``configs/edit.py``).
    On a fully distilled LCM (``time_cond_proj_dim``) each branch's guidance scale enters the
    UNet as its guidance embedding instead of a classifier-free guidance pair."""

    steps: int = 15
    original_inference_steps: int = 50
    source_guidance: float = 1.0
    target_guidance: float = 2.0
    negative_prompt: str = ""
    self_fraction: float = 0.6  # mutual self-attention "early" phase: first round(f*steps) steps
    cross_fraction: float = 0.7  # Re-CA active for the first round(f*steps) steps
    replace_scale: float = 1.0  # r >= 1 for new target tokens
    blend_threshold: float = 0.3
    blend_start_step: int | None = 8  # 1-based step from which latents are blended; None: never
    blend_downsample: int = 4  # cross-attention level used for the mask (latent / 4 = 16x16 at 512px)
    chunk_frames: int = 8
    shared_noise: bool = True  # paper: one initial latent and one noise per step for all frames
    cf_masa: bool = True
    bg_masa: bool = True
    re_ca: bool = True
    source_cross_frame: bool = False
    tokenflow: bool = True
    keyframe_interval: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("self_fraction", "cross_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.replace_scale < 1.0:
            raise ValueError("replace_scale must be >= 1")
        if self.chunk_frames < 1 or self.keyframe_interval < 1 or self.steps < 1 or self.blend_downsample < 1:
            raise ValueError("steps, chunk_frames, keyframe_interval and blend_downsample must be >= 1")
        if self.original_inference_steps < self.steps:
            raise ValueError(f"steps ({self.steps}) cannot exceed original_inference_steps ({self.original_inference_steps})")
        if not 0.0 <= self.blend_threshold <= 1.0:
            raise ValueError(f"blend_threshold must be in [0, 1], got {self.blend_threshold}")
        if self.blend_start_step is not None and self.blend_start_step < 1:
            raise ValueError(f"blend_start_step must be None or >= 1, got {self.blend_start_step}")
        if self.source_guidance < 0 or self.target_guidance < 0:
            raise ValueError("guidance scales must be >= 0")


@dataclasses.dataclass(frozen=True)
class _Static:
    """The shape-determining part of a run (jit static argument)."""

    frames: int
    chunk: int
    groups: int
    cf_masa: bool
    bg_masa: bool
    re_ca: bool
    source_cross_frame: bool
    tokenflow: bool
    keyframe_interval: int
    shared_noise: bool
    blend_tokens: int
    kernel: str
    trace: bool
    guidance_embed: int | None  # fully distilled LCM: guidance enters as an embedding, no uncond rows


@struct.dataclass
class EditTrace:
    """Per-step internals (tests, debugging): ``[steps, F, h, w, c]``."""

    x0_edit: jax.Array
    z_src: jax.Array  # re-noised source branch entering the next step
    z_edit: jax.Array  # after blending
    z_bg: jax.Array
    mask: jax.Array  # [steps, F, h, w, 1]; zeros where blending is off


def _collect(caps: nnx.State, name: str) -> list[jax.Array]:
    """Sown captures ``<name>_<site>`` in site order."""
    found = {}
    for path, var in nnx.to_flat_state(caps):
        leaf = str(path[-1])
        if leaf.startswith(name + "_"):
            found[int(leaf.rsplit("_", 1)[1])] = var.get_value()[0]
    return [found[k] for k in sorted(found)]


def _guide(out: jax.Array, groups: int, g: jax.Array) -> jax.Array:
    """UNet output ``[G*3*m, ...]`` -> guided noise of (source, edit, background) ``[3, m, ...]``.
    One expression for all branches (``g`` = per-branch scales), so equal inputs give bitwise
    equal outputs whatever the compiler fuses."""
    out = out.reshape(groups, 3, -1, *out.shape[1:])
    if groups == 1:
        return out[0]
    c, u = out[0], out[1]
    return u + g.reshape(3, *(1,) * (c.ndim - 1)).astype(c.dtype) * (c - u)


def _padded(z0: jax.Array, chunk: int) -> jax.Array:
    """Source latents padded (repeating the last frame) to whole chunks, in float32."""
    z0 = z0.astype(jnp.float32)  # latent arithmetic in float32 whatever the networks' dtype
    pad = -z0.shape[0] % chunk
    return jnp.concatenate([z0, jnp.repeat(z0[-1:], pad, axis=0)]) if pad else z0


def _noise(key: jax.Array, shape: tuple[int, ...], shared: bool) -> jax.Array:
    """One noise for every frame (paper) or one per frame (released code)."""
    draw = (1, *shape[1:]) if shared else shape
    return jnp.broadcast_to(jax.random.normal(key, draw, jnp.float32), shape)


@partial(jax.jit, static_argnames=("static",))
def _start(z0, key, *, static: _Static):
    """The carry entering the first step: every branch at the same initial noise."""
    z0p = _padded(z0, static.chunk)
    zs = _noise(jax.random.fold_in(key, 1_000_003), z0p.shape, static.shared_noise)  # a stream no step uses
    return zs, jnp.zeros((2, *zs.shape), zs.dtype)


@partial(jax.jit, static_argnames=("graphdef", "static"), donate_argnames=("carry",))
def _edit_step(graphdef, state, schedule, z0, emb, align, inp, scalars, key, carry, *, static: _Static):
    """One denoising step of the whole video (every chunk, TokenFlow, blending).

    ``emb``: text embeddings ``[3, L, D]`` of the source, target and negative prompts; ``inp``:
    this step's row of the step table (index, timesteps, control switches). The host drives the
    steps (progress per step without a host callback, so the compiled step is cacheable).
    """
    TRACES["edit"] += 1  # counts compilations (runs only while tracing)
    S = static
    F, (h, w, _) = S.frames, z0.shape[1:]
    m = S.chunk
    z0p = _padded(z0, m)
    Fp = z0p.shape[0]
    n_chunks = Fp // m
    e_src, e_tgt, e_neg = emb[0], emb[1], emb[2]

    def context(n: int) -> jax.Array:
        parts = [e_src] * n + [e_tgt] * n + [e_src] * n + ([e_neg] * (3 * n) if S.groups == 2 else [])
        return jnp.stack(parts)

    def control(n: int, early, cross_on, mode: str, tf=None) -> EditControl:
        return EditControl(
            self_early=early, cross_on=cross_on, mapper=align["mapper"], aligned=align["aligned"],
            edited=align["edited"], text=align["text"], replace_scale=scalars["replace_scale"], tokenflow=tf,
            groups=S.groups, frames=n, cf_masa=S.cf_masa, bg_masa=S.bg_masa, re_ca=S.re_ca,
            source_cross_frame=S.source_cross_frame, blend_tokens=S.blend_tokens, mode=mode, kernel=S.kernel,
        )

    def run_unet(zs, ze, zb, t, ctl: EditControl):
        n = zs.shape[0]
        x = jnp.concatenate([zs, ze, zb])
        if S.groups == 2:
            x = jnp.concatenate([x, x])
        g = jnp.stack([scalars["g_src"], scalars["g_tgt"], scalars["g_tgt"]])
        cond = None
        if S.guidance_embed is not None:  # per branch: w = guidance - 1, as LCM pipelines do
            cond = jnp.repeat(guidance_scale_embedding(g - 1.0, S.guidance_embed), n, axis=0)
        # a fresh module per call: capturing mutates the module, which must live in this trace level
        unet = nnx.merge(graphdef, state)
        out, caps = nnx.capture(unet, nnx.Intermediate)(x, t, context(n), timestep_cond=cond, control=ctl)
        return _guide(out.astype(jnp.float32), S.groups, g), caps

    def model_eps(zs, ze, zb, t, k_step, early, cross_on):
        tf_fixed = None
        if S.tokenflow:
            kf = pick_keyframes(jax.random.fold_in(k_step, 1), F, S.keyframe_interval)
            _, caps = run_unet(zs[kf], ze[kf], zb[kf], t, control(kf.shape[0], early, cross_on, "keyframes"))
            tf_fixed = (kf, tuple(_collect(caps, "tf_src")), tuple(_collect(caps, "tf_out")))

        def chunk(ci):
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, ci * m, m)  # noqa: E731
            if S.tokenflow:
                kf, src, out = tf_fixed
                frames = jnp.minimum(ci * m + jnp.arange(m), F - 1)
                minus, plus, wgt = neighbours(kf, frames)
                ctl = control(m, early, cross_on, "propagate", TokenFlowInputs(src, out, minus, plus, wgt))
            else:
                ctl = control(m, early, cross_on, "joint")
            eps, caps = run_unet(sl(zs), sl(ze), sl(zb), t, ctl)
            return eps, blend_mask([a.astype(jnp.float32) for a in _collect(caps, "blend")], (h, w), scalars["threshold"])

        eps, mask = jax.lax.map(chunk, jnp.arange(n_chunks))  # [C, 3, m, ...], [C, m, ...]
        eps = jnp.moveaxis(eps, 1, 0).reshape(3, Fp, *eps.shape[3:])
        return eps, mask.reshape(Fp, *mask.shape[2:])

    # Carry: the source branch and the edit/background branches as differences from it.
    zs, d = carry  # d: [2, Fp, ...] = (z_edit - z_src, z_bg - z_src)
    k_step = jax.random.fold_in(key, inp["i"])
    a, a_next = schedule.alpha(inp["t"]), schedule.alpha(inp["t_next"])
    eps, mask = model_eps(zs, zs + d[0], zs + d[1], inp["t"], k_step, inp["early"], inp["cross_on"])
    # docs/fastvideoedit.md: e_cons = (z_src - sqrt(a) z0) / sqrt(1-a); eps_b = eps_hat_b + e_cons - eps_src;
    # x0_b = (z_b - sqrt(1-a) eps_b) / sqrt(a). Substituting e_cons, x0_b = z0 + diff_b with
    # diff_b below, and re-noising with the shared noise gives z_b' = z_src' + sqrt(a') diff_b.
    # Carrying differences keeps a branch that equals the source bitwise equal to it (the
    # direct form loses ~1e-5 in fp32: 1/sqrt(a) is ~15 at t=999, and the compiler may round
    # recomputed terms differently).
    diff = d / jnp.sqrt(a) - jnp.sqrt((1 - a) / a) * (eps[1:] - eps[0])
    n = _noise(jax.random.fold_in(k_step, 2), z0p.shape, S.shared_noise)
    zs = jnp.sqrt(a_next) * z0p + jnp.sqrt(1 - a_next) * n
    d = jnp.sqrt(a_next) * diff
    mask = jnp.where(inp["blend_on"], mask, 0.0)
    d = d.at[0].set(jnp.where(inp["blend_on"] & (mask == 0), d[1], d[0]))  # latent blend (mask is 0/1)
    x0_e = (z0p + diff[0])[:F]
    ys = (x0_e, zs[:F], (zs + d[0])[:F], (zs + d[1])[:F], mask[:F]) if S.trace else (x0_e,)
    return (zs, d), ys


@dataclasses.dataclass
class EditResult:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    latents: jax.Array  # edited clean latents [F, h, w, 4]
    timings: dict[str, float]


@partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _encode(graphdef, state, images, *, chunk):
    vae = nnx.merge(graphdef, state)
    z = jax.lax.map(lambda x: encode_latents(vae, x), images.reshape(-1, chunk, *images.shape[1:]))
    return z.reshape(images.shape[0], *z.shape[2:])


@partial(jax.jit, static_argnames=("graphdef", "chunk"))
def _decode(graphdef, state, latents, *, chunk):
    vae = nnx.merge(graphdef, state)
    out = jax.lax.map(lambda z: decode_latents(vae, z), latents.reshape(-1, chunk, *latents.shape[1:]))
    return out.reshape(latents.shape[0], *out.shape[2:])


def _pad_to(x: np.ndarray | jax.Array, n: int):
    return x if x.shape[0] % n == 0 else jnp.concatenate([x, jnp.repeat(x[-1:], n - x.shape[0] % n, axis=0)])


class FastVideoEditor:
    """Edits whole clips. ``edit(frames, source_prompt, target_prompt)``."""

    def __init__(self, bundle: ModelBundle, config: FastVideoEditConfig = FastVideoEditConfig()):
        self.bundle, self.config = bundle, config
        self._unet = nnx.split(bundle.unet)
        self._vae = nnx.split(bundle.vae)

    def _check_prompts(self, source: str, target: str) -> None:
        for name, p in (("source", source), ("target", target)):
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"the {name} prompt is empty")

    def edit_latents(
        self,
        z0: jax.Array,
        source_prompt: str,
        target_prompt: str,
        *,
        blend_words: Sequence[str] | None = None,
        trace: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[jax.Array, EditTrace | None]:
        """Edit source latents ``[F, h, w, 4]`` (already scaled for the UNet); ``progress(i)``
        is called on the host after step ``i`` has finished."""
        cfg = self.config
        self._check_prompts(source_prompt, target_prompt)
        tok = self.bundle.tokenizer
        L = self.bundle.text_encoder.config.max_position_embeddings
        emb = encode_prompt_rows(self.bundle.text_encoder, tok, [source_prompt, target_prompt, cfg.negative_prompt])
        al = align_prompts(tok, source_prompt, target_prompt, blend_words=blend_words, max_length=L)
        F, h, w, _ = z0.shape
        f = self.bundle.unet.config.downsample_factor
        if h % f or w % f:
            raise ValueError(f"latent size {h}x{w} must be a multiple of {f}")
        if h % cfg.blend_downsample or w % cfg.blend_downsample:
            raise ValueError(f"latent size {h}x{w} must be a multiple of blend_downsample={cfg.blend_downsample}")
        ts = lcm_timesteps(cfg.steps, original_inference_steps=cfg.original_inference_steps)
        n = len(ts)
        distilled = self.bundle.unet.config.time_cond_proj_dim  # e.g. LCM_Dreamshaper_v7
        idx = np.arange(n)
        table = {  # host arrays: one row per step is passed to the compiled step
            "i": idx.astype(np.int32),
            "t": np.asarray(ts, np.int32),
            "t_next": np.concatenate([ts[1:], [-1]]).astype(np.int32),
            "early": idx < round(cfg.self_fraction * n),
            "cross_on": idx < round(cfg.cross_fraction * n),
            "blend_on": idx + 1 >= (cfg.blend_start_step if cfg.blend_start_step else n + 1),
        }
        static = _Static(
            frames=F, chunk=min(cfg.chunk_frames, F),
            groups=1 if distilled or (cfg.source_guidance == 1 and cfg.target_guidance == 1) else 2,
            cf_masa=cfg.cf_masa, bg_masa=cfg.bg_masa, re_ca=cfg.re_ca, source_cross_frame=cfg.source_cross_frame,
            tokenflow=cfg.tokenflow, keyframe_interval=cfg.keyframe_interval, shared_noise=cfg.shared_noise,
            blend_tokens=(h // cfg.blend_downsample) * (w // cfg.blend_downsample),
            kernel=self.bundle.unet.config.attention_kernel, trace=trace, guidance_embed=distilled,
        )
        scalars = {k: jnp.float32(v) for k, v in (
            ("g_src", cfg.source_guidance), ("g_tgt", cfg.target_guidance), ("replace_scale", cfg.replace_scale),
            ("threshold", cfg.blend_threshold))}
        align = {k: jnp.asarray(getattr(al, k)) for k in ("mapper", "aligned", "edited", "text")}
        key, z0 = jax.random.key(cfg.seed), jnp.asarray(z0)
        carry, rows = _start(z0, key, static=static), []
        for i in range(n):  # host-driven steps: progress without host callbacks in compiled code
            inp = {k: v[i] for k, v in table.items()}
            carry, ys = _edit_step(*self._unet, self.bundle.schedule, z0, emb, align, inp, scalars, key, carry,
                                   static=static)
            rows.append(ys)
            if progress is not None:
                jax.block_until_ready(ys)
                progress(i)
        result = rows[-1][0]
        trace_out = EditTrace(*(jnp.stack(y) for y in zip(*rows, strict=True))) if trace else None
        return result, trace_out

    def edit(
        self,
        frames: np.ndarray,
        source_prompt: str,
        target_prompt: str,
        *,
        blend_words: Sequence[str] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> EditResult:
        """Edit uint8 frames ``[F, H, W, 3]``; returns the edited frames and a timing split."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"expected frames [F>0, H, W, 3], got {frames.shape}")
        self._check_prompts(source_prompt, target_prompt)
        f = self.bundle.vae_scale * self.bundle.unet.config.downsample_factor
        if frames.shape[1] % f or frames.shape[2] % f:
            raise ValueError(f"frame size {frames.shape[1]}x{frames.shape[2]} must be a multiple of {f}")
        chunk = min(self.config.chunk_frames, len(frames))
        timings = {}
        t0 = time.perf_counter()
        images = _pad_to(from_uint8(frames), chunk)
        z0 = jax.block_until_ready(_encode(*self._vae, images, chunk=chunk))[: len(frames)]
        timings["encode_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        latents, _ = self.edit_latents(z0, source_prompt, target_prompt, blend_words=blend_words, progress=progress)
        latents = jax.block_until_ready(latents)
        timings["sampling_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = to_uint8(_decode(*self._vae, _pad_to(latents, chunk), chunk=chunk)[: len(frames)])
        timings["decode_s"] = time.perf_counter() - t0
        return EditResult(out, latents, timings)
