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
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, struct

from jaxvid.control.align import align_prompts
from jaxvid.control.blend import blend_mask, released_mask
from jaxvid.control.fastvideoedit import EditControl, TokenFlowInputs
from jaxvid.control.tokenflow import neighbours, neighbours_released, pick_keyframes
from jaxvid.models.embeddings import guidance_scale_embedding
from jaxvid.pipelines.autoencode import decode_latents, encode_latents, from_uint8, to_uint8
from jaxvid.pipelines.bundle import ModelBundle
from jaxvid.schedulers.lcm import lcm_timesteps
from jaxvid.text import encode_prompt_rows

TRACES = {"edit": 0}


PROFILES = ("paper", "released")
GUIDANCE_MODES = ("auto", "cfg", "embedding", "none")
# what the authors' released code uses besides its profile (its teaser configs)
RELEASED_SETTINGS = dict(profile="released", shared_noise=False, guidance_mode="cfg",
                         negative_prompt="ugly, blurry, low res, unrealistic, unaesthetic")


@dataclasses.dataclass(frozen=True)
class FastVideoEditConfig:
    """Every knob of the method. ``profile`` picks between the paper as jaxvid reads it (the
    default) and a reproduction of the authors' released code; docs/fastvideoedit.md lists every
    difference. ``configs/edit.py`` holds the presets."""

    steps: int = 15
    original_inference_steps: int = 50
    source_guidance: float = 1.0
    target_guidance: float = 2.0
    # auto: guidance embedding on fully distilled LCMs (time_cond_proj_dim), else CFG pairs when a
    # scale differs from 1, else none; cfg: uncond/cond pairs always (the released code on
    # LCM_Dreamshaper_v7); embedding: w = scale - 1 as the UNet's guidance embedding; none.
    guidance_mode: str = "auto"
    negative_prompt: str = ""
    profile: str = "paper"  # paper | released (step switching, blend mask, TokenFlow weights)
    self_fraction: float = 0.6  # t_s: mutual self-attention (CF-Masa) "early" phase
    bg_fraction: float | None = None  # t_bg: background-branch control (Bg-Masa); None: = t_s (released code)
    cross_fraction: float = 0.7  # t_c: Re-CA active phase
    replace_scale: float = 1.0  # r >= 1 for new target tokens
    blend_words: tuple[str, ...] = ()  # paper mask: target words of the edited region (default: new words)
    change_words: tuple[str, ...] = ()  # released mask: source-prompt words of the region to change
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
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {PROFILES}, got {self.profile!r}")
        if self.guidance_mode not in GUIDANCE_MODES:
            raise ValueError(f"guidance_mode must be one of {GUIDANCE_MODES}, got {self.guidance_mode!r}")
        for name in ("self_fraction", "cross_fraction", "bg_fraction"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
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
        if self.profile == "released" and self.blend_start_step is not None and not self.change_words:
            raise ValueError("the released profile's blend mask needs change_words (source-prompt words of the "
                             "region to change), or blend_start_step=None")

    def phases(self) -> dict[str, np.ndarray]:
        """Per step: inside t_s (``early``), t_bg (``bg_early``), t_c (``cross_on``), blending on.
        paper: the first ``round(f * n)`` steps; released: the code's ``(i + 1) / n`` comparisons
        (self/bg early while (i+1)/n < f, cross while (i+1)/n <= f), one step apart at 15 steps."""
        n, idx = self.steps, np.arange(self.steps)
        bg = self.self_fraction if self.bg_fraction is None or self.profile == "released" else self.bg_fraction
        if self.profile == "released":
            pos = (idx + 1) / n
            early, bg_early, cross = pos < self.self_fraction, pos < bg, pos <= self.cross_fraction
        else:
            early, bg_early = idx < round(self.self_fraction * n), idx < round(bg * n)
            cross = idx < round(self.cross_fraction * n)
        blend = idx + 1 >= (self.blend_start_step if self.blend_start_step else n + 1)
        if self.profile == "released":
            blend &= idx > 0  # the code never blends after the first step
        return {"early": early, "bg_early": bg_early, "cross_on": cross, "blend_on": blend}

    @classmethod
    def released(cls, **overrides) -> "FastVideoEditConfig":
        """The authors' code as released: its profile, per-frame noise, CFG pairs and negative
        prompt (numeric settings as in its teaser configs unless overridden)."""
        return cls(**{**RELEASED_SETTINGS, **overrides})


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
    blend_grid: tuple[int, int] | None  # rows x cols of the blend level; None: no blending at all
    blend_mode: str  # paper | released
    tokenflow_rule: str  # paper (linear between surrounding keyframes) | released
    kernel: str
    trace: bool
    guidance_embed: int | None  # the UNet's guidance-embedding width when guidance rides on it


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


def branch_update(zs, d, z0, eps, a, a_next, noise):
    """One consistency step of all three branches; returns ``(zs', d', diff)``.

    ``zs``: the source branch; ``d`` = (z_edit - z_src, z_bg - z_src); ``eps`` = guided noise of
    (source, edit, background). The method (docs/fastvideoedit.md; the released code's ``BCS``
    with eta = 1): ``e_cons = (z_src - sqrt(a) z0) / sqrt(1-a)``, ``eps_b = eps_hat_b + e_cons -
    eps_src``, ``x0_b = (z_b - sqrt(1-a) eps_b) / sqrt(a)``, then every branch is re-noised to
    the next step with the same noise (``x0_src = z0``). Substituting ``e_cons`` gives ``x0_b = z0 +
    diff_b`` with ``diff_b`` below and ``z_b' = z_src' + sqrt(a') diff_b``. Carrying differences
    keeps a branch that equals the source bitwise equal to it (the direct form loses ~1e-5 in
    fp32: 1/sqrt(a) is ~15 at t=999, and the compiler may round recomputed terms differently)."""
    diff = d / jnp.sqrt(a) - jnp.sqrt((1 - a) / a) * (eps[1:] - eps[0])
    zs = jnp.sqrt(a_next) * z0 + jnp.sqrt(1 - a_next) * noise
    return zs, jnp.sqrt(a_next) * diff, diff


@partial(jax.jit, static_argnames=("static", "acc_shape"))
def _start(z0, key, *, static: _Static, acc_shape: tuple[int, ...]):
    """The carry entering the first step: every branch at the same initial noise, and the
    released mask's accumulated attention (zeros)."""
    z0p = _padded(z0, static.chunk)
    zs = _noise(jax.random.fold_in(key, 1_000_003), z0p.shape, static.shared_noise)  # a stream no step uses
    return zs, jnp.zeros((2, *zs.shape), zs.dtype), jnp.zeros(acc_shape, jnp.float32)


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
    blend_tokens = -1 if S.blend_grid is None else S.blend_grid[0] * S.blend_grid[1]

    def context(n: int) -> jax.Array:
        parts = [e_src] * n + [e_tgt] * n + [e_src] * n + ([e_neg] * (3 * n) if S.groups == 2 else [])
        return jnp.stack(parts)

    def control(n: int, mode: str, tf=None) -> EditControl:
        return EditControl(
            self_early=inp["early"], bg_early=inp["bg_early"], cross_on=inp["cross_on"], mapper=align["mapper"],
            aligned=align["aligned"], edited=align["edited"], text=align["text"],
            replace_scale=scalars["replace_scale"], tokenflow=tf, groups=S.groups, frames=n, cf_masa=S.cf_masa,
            bg_masa=S.bg_masa, re_ca=S.re_ca, source_cross_frame=S.source_cross_frame, blend_tokens=blend_tokens,
            blend_mode=S.blend_mode, mode=mode, kernel=S.kernel,
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
            if S.groups == 2:
                cond = jnp.concatenate([cond, cond])
        # a fresh module per call: capturing mutates the module, which must live in this trace level
        unet = nnx.merge(graphdef, state)
        out, caps = nnx.capture(unet, nnx.Intermediate)(x, t, context(n), timestep_cond=cond, control=ctl)
        return _guide(out.astype(jnp.float32), S.groups, g), caps

    def chunk_eps(zs, ze, zb, t, k_step):
        tf_fixed = None
        if S.tokenflow:
            kf = pick_keyframes(jax.random.fold_in(k_step, 1), F, S.keyframe_interval)
            _, caps = run_unet(zs[kf], ze[kf], zb[kf], t, control(kf.shape[0], "keyframes"))
            tf_fixed = (kf, tuple(_collect(caps, "tf_src")), tuple(_collect(caps, "tf_out")))

        def chunk(ci):
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, ci * m, m)  # noqa: E731
            if S.tokenflow:
                kf, src, out = tf_fixed
                frames = jnp.minimum(ci * m + jnp.arange(m), F - 1)
                if S.tokenflow_rule == "released":
                    minus, plus, wgt = neighbours_released(kf, frames, S.keyframe_interval)
                else:
                    minus, plus, wgt = neighbours(kf, frames)
                ctl = control(m, "propagate", TokenFlowInputs(src, out, minus, plus, wgt))
            else:
                ctl = control(m, "joint")
            eps, caps = run_unet(sl(zs), sl(ze), sl(zb), t, ctl)
            maps = _collect(caps, "blend")
            return eps, (jnp.mean(jnp.stack(maps), axis=0).astype(jnp.float32) if maps else jnp.zeros((m, 0)))

        eps, maps = jax.lax.map(chunk, jnp.arange(n_chunks))  # [C, 3, m, ...], [C, m, ...]
        eps = jnp.moveaxis(eps, 1, 0).reshape(3, Fp, *eps.shape[3:])
        return eps, maps.reshape(Fp, *maps.shape[2:])

    zs, d, acc = carry
    k_step = jax.random.fold_in(key, inp["i"])
    a, a_next = schedule.alpha(inp["t"]), schedule.alpha(inp["t_next"])
    eps, maps = chunk_eps(zs, zs + d[0], zs + d[1], inp["t"], k_step)
    noise = _noise(jax.random.fold_in(k_step, 2), z0p.shape, S.shared_noise)
    zs, d, diff = branch_update(zs, d, z0p, eps, a, a_next, noise)
    mask = jnp.zeros((Fp, h, w, 1), jnp.float32)
    if S.blend_grid is not None:
        if S.blend_mode == "released":
            acc = acc + maps  # the released mask sums the source maps over all steps so far
            mask = released_mask(acc, align["change"], S.blend_grid, (h, w), scalars["threshold"])
            outside = d[0] * 0.0  # outside the mask: the re-noised source latent itself
        else:
            mask = blend_mask(maps, S.blend_grid, (h, w), scalars["threshold"])
            outside = d[1]  # outside the mask: the background branch
        mask = jnp.where(inp["blend_on"], mask, 0.0)
        d = d.at[0].set(jnp.where(inp["blend_on"] & (mask == 0), outside, d[0]))  # latent blend (mask is 0/1)
    x0_e = (z0p + diff[0])[:F]
    ys = (x0_e, zs[:F], (zs + d[0])[:F], (zs + d[1])[:F], mask[:F]) if S.trace else (x0_e,)
    return (zs, d, acc), ys


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

    def guidance_layout(self) -> tuple[int, int | None]:
        """``(groups, embedding width)`` for the config's guidance mode on this UNet: groups 2 =
        classifier-free pairs (conditional, then unconditional with the negative prompt)."""
        cfg, dim = self.config, self.bundle.unet.config.time_cond_proj_dim
        mode = cfg.guidance_mode
        if mode == "auto":
            mode = "embedding" if dim else ("none" if cfg.source_guidance == cfg.target_guidance == 1 else "cfg")
        if mode == "embedding" and not dim:
            raise ValueError("guidance_mode 'embedding' needs a UNet with time_cond_proj_dim (a fully distilled LCM)")
        return (2 if mode == "cfg" else 1), (dim if mode == "embedding" else None)

    def edit_latents(
        self,
        z0: jax.Array,
        source_prompt: str,
        target_prompt: str,
        *,
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
        al = align_prompts(tok, source_prompt, target_prompt, blend_words=cfg.blend_words or None,
                           change_words=cfg.change_words or None, max_length=L)
        F, h, w, _ = z0.shape
        f = self.bundle.unet.config.downsample_factor
        if h % f or w % f:
            raise ValueError(f"latent size {h}x{w} must be a multiple of {f}")
        if h % cfg.blend_downsample or w % cfg.blend_downsample:
            raise ValueError(f"latent size {h}x{w} must be a multiple of blend_downsample={cfg.blend_downsample}")
        ts = lcm_timesteps(cfg.steps, original_inference_steps=cfg.original_inference_steps)
        n = len(ts)
        idx = np.arange(n)
        table = {  # host arrays: one row per step is passed to the compiled step
            "i": idx.astype(np.int32),
            "t": np.asarray(ts, np.int32),
            "t_next": np.concatenate([ts[1:], [-1]]).astype(np.int32),
            **cfg.phases(),
        }
        groups, embed = self.guidance_layout()
        grid = (h // cfg.blend_downsample, w // cfg.blend_downsample)
        blending = bool(table["blend_on"].any())
        static = _Static(
            frames=F, chunk=min(cfg.chunk_frames, F), groups=groups, cf_masa=cfg.cf_masa, bg_masa=cfg.bg_masa,
            re_ca=cfg.re_ca, source_cross_frame=cfg.source_cross_frame, tokenflow=cfg.tokenflow,
            keyframe_interval=cfg.keyframe_interval, shared_noise=cfg.shared_noise,
            blend_grid=grid if blending else None, blend_mode="released" if cfg.profile == "released" else "paper",
            tokenflow_rule=cfg.profile, kernel=self.bundle.unet.config.attention_kernel, trace=trace,
            guidance_embed=embed,
        )
        scalars = {k: jnp.float32(v) for k, v in (
            ("g_src", cfg.source_guidance), ("g_tgt", cfg.target_guidance), ("replace_scale", cfg.replace_scale),
            ("threshold", cfg.blend_threshold))}
        align = {k: jnp.asarray(getattr(al, k)) for k in ("mapper", "aligned", "edited", "text", "change")}
        Fp = -(-F // static.chunk) * static.chunk
        acc_shape = (Fp, grid[0] * grid[1], L) if blending and static.blend_mode == "released" else (0,)
        key, z0 = jax.random.key(cfg.seed), jnp.asarray(z0)
        carry, rows = _start(z0, key, static=static, acc_shape=acc_shape), []
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
        latents, _ = self.edit_latents(z0, source_prompt, target_prompt, progress=progress)
        latents = jax.block_until_ready(latents)
        timings["sampling_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = to_uint8(_decode(*self._vae, _pad_to(latents, chunk), chunk=chunk)[: len(frames)])
        timings["decode_s"] = time.perf_counter() - t0
        return EditResult(out, latents, timings)
