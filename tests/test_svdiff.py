"""SVDiff: memory module, baseline temporal modules, and the streaming step's invariants."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvid.models.build import abstract_model
from jaxvid.models.temporal import TemporalConfig, TemporalUNet, make_temporal_modules, temporal_unet as wrap
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.pipelines.default import random_bundle
from jaxvid.pipelines.svdiff import TRACES, StreamConfig, StreamEditor
from jaxvid.weights.convert import param_paths
from jaxvid.weights.temporal import load_temporal, save_temporal
from configs.models import get_config

KINDS = ["memory", "window", "shift", "sliding", "linear"]


@pytest.fixture(scope="module")
def bundle():
    return random_bundle("tiny")


def temporal_unet(bundle, kind="memory", perturb=0.0, **kw):
    """``bundle``'s UNet with ``kind`` temporal modules (``perturb``: make them act, as if trained)."""
    model = wrap(bundle.unet, TemporalConfig(kind=kind, **kw))
    if perturb:  # trained-like: non-zero output projections so the modules actually act
        k = jax.random.key(5)
        for var in param_paths(model.temporal).values():
            k, sub = jax.random.split(k)
            var.set_value(var.get_value() + perturb * jax.random.normal(sub, var.shape))
    return model


def frames(n, seed=0, size=64):
    return (np.random.default_rng(seed).random((n, size, size, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("kind", ["memory", "window", "sliding", "linear"])
def test_fresh_temporal_unet_equals_base_unet(bundle, kind):
    model = temporal_unet(bundle, kind)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 4))
    ctx = jax.random.normal(jax.random.key(1), (2, 77, 64))
    out, state = model(x, 500, ctx, model.init_state(2, (16, 16)))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(bundle.unet(x, 500, ctx)))
    assert len(state) == len(bundle.unet.transformer_blocks())


def test_sd15_memory_parameter_count():
    cfg = UNetConfig.from_dict(dict(get_config("sd15").unet))
    def build(r):
        unet = UNet2DConditionModel(cfg, rngs=r)
        return TemporalUNet(unet, make_temporal_modules(unet, TemporalConfig(), rngs=r), TemporalConfig())

    model = abstract_model(build)
    params = param_paths(model.temporal)
    qkvo = sum(int(np.prod(v.shape)) for p, v in params.items() if p.endswith("kernel") and ".attn." in p)
    total = sum(int(np.prod(v.shape)) for v in params.values())
    assert len(model.temporal) == 16
    assert qkvo == 49_561_600  # 4 d^2 over the 16 blocks: the paper's "+49.7M"
    assert 49.5e6 < total < 50.2e6, total
    base = sum(int(np.prod(v.shape)) for v in param_paths(model.unet).values())
    assert base == 859_520_964  # base weights and names untouched


def run_stream(editor, video):
    state = editor.init_state()
    outs = []
    for f in video:
        out, ok, state = editor.step(state, f)
        if bool(ok):
            outs.append(np.asarray(out))
    return np.stack(outs), state


@pytest.mark.parametrize("kind", KINDS)
def test_streaming_is_causal(bundle, kind):
    model = temporal_unet(bundle, kind, perturb=0.05)
    ed = StreamEditor(bundle, model, "a green circle", StreamConfig(steps=2, inversion="noise"), height=64, width=64)
    a = frames(5, 0)
    b = a.copy()
    b[3:] = frames(2, 1)
    out_a, _ = run_stream(ed, a)
    out_b, _ = run_stream(ed, b)
    np.testing.assert_array_equal(out_a[:3], out_b[:3])
    assert not np.array_equal(out_a[3:], out_b[3:])
    if kind != "shift":
        # the temporal module carries information: the same last frame after different histories differs
        c = a.copy()
        c[:2] = frames(2, 7)
        out_c, _ = run_stream(ed, c)
        assert not np.array_equal(out_a[4], out_c[4])


@pytest.mark.parametrize("mode", ["lcm", "noise", "consistency"])
def test_state_constant_over_40_frames_and_compiles_once(bundle, mode):
    model = temporal_unet(bundle, "memory", perturb=0.05)
    ed = StreamEditor(bundle, model, "a green circle", StreamConfig(steps=2, inversion=mode), height=64, width=64)
    state = ed.init_state()
    spec = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    n0 = None
    for i, f in enumerate(np.repeat(frames(4), 10, axis=0)):
        out, _, state = ed.step(state, f)
        if i == 0:
            n0 = TRACES["step"]
    assert int(state.frame_index) == 40
    assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == spec
    assert TRACES["step"] == n0, "one compilation per stream"
    assert np.asarray(out).shape == (64, 64, 3)


def test_scan_over_frames_equals_python_loop(bundle):
    model = temporal_unet(bundle, "memory", perturb=0.05)
    ed = StreamEditor(bundle, model, "a green circle", StreamConfig(steps=2, inversion="lcm", guidance=1.5),
                      height=64, width=64)
    video = frames(4)
    loop, _ = run_stream(ed, video)
    fn = ed.step_fn()
    _, (scanned, _) = jax.jit(lambda s, v: jax.lax.scan(fn, s, v))(ed.init_state(), jnp.asarray(video, jnp.float32) / 127.5 - 1)
    assert np.abs(np.asarray(scanned).astype(int) - loop.astype(int)).max() <= 1


@pytest.mark.parametrize("mode", [pytest.param("lcm", marks=pytest.mark.slow), "consistency"])  # same mechanism
def test_stream_batch_equals_sequential(bundle, mode):
    """k steps of k successive frames in one UNet call give the same frames, k-1 frames later."""
    model = temporal_unet(bundle, "memory", perturb=0.05)
    cfg = StreamConfig(steps=3, inversion=mode, guidance=1.0)
    seq = StreamEditor(bundle, model, "a green circle", cfg, height=64, width=64)
    bat = StreamEditor(bundle, model, "a green circle", dataclasses.replace(cfg, stream_batch=True), height=64, width=64)
    video = frames(6)
    a, _ = run_stream(seq, video)
    b, _ = run_stream(bat, np.concatenate([video, video[-1:].repeat(bat.delay, 0)]))  # flush with padding frames
    assert bat.delay == 2 and len(b) == 6
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_rcfg_drops_the_unconditional_branch(bundle):
    model = temporal_unet(bundle, "memory", perturb=0.05)
    cfg = StreamConfig(steps=2, inversion="noise", guidance=1.0)
    full = StreamEditor(bundle, model, "a green circle", cfg, height=64, width=64)
    res = StreamEditor(bundle, model, "a green circle", dataclasses.replace(cfg, guidance_mode="rcfg"), height=64, width=64)
    assert full.static.branches == 2 and res.static.branches == 1
    a, _ = run_stream(full, frames(2))
    b, _ = run_stream(res, frames(2))
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_memory_weights_round_trip(bundle, tmp_path):
    model = temporal_unet(bundle, "memory", perturb=0.05, memory_hw=(4, 4))
    save_temporal(model, tmp_path / "mem")
    fresh = temporal_unet(bundle, "memory", memory_hw=(4, 4))
    load_temporal(fresh, tmp_path / "mem")
    for (p, a), (_, b) in zip(sorted(param_paths(model.temporal).items()), sorted(param_paths(fresh.temporal).items()), strict=True):
        np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=p)
    other = temporal_unet(bundle, "memory", memory_hw=(8, 8))
    with pytest.raises(Exception, match="memory_hw"):
        load_temporal(other, tmp_path / "mem")


def test_ablation_options(bundle):
    for kw in (dict(memory_hw=(1, 1)), dict(memory_init="learned"), dict(memory_init="shared"),
               dict(memory_hw=(16, 16))):
        model = temporal_unet(bundle, "memory", perturb=0.05, **kw)
        st = model.init_state(1, (16, 16))
        h, w = kw.get("memory_hw", (8, 8))
        assert st[0].shape == (1, h * w, 32) and st[0].dtype == jnp.float32
    learned = temporal_unet(bundle, "memory", memory_init="learned")
    assert all("pos_fc" not in p for p in param_paths(learned.temporal))
    cells = np.asarray(learned.init_state(1, (16, 16))[0][0])
    assert np.abs(cells - cells[:1]).max() > 0  # per-cell tokens differ from the start
    shared = np.asarray(temporal_unet(bundle, "memory", memory_init="shared").init_state(1, (16, 16))[0][0])
    np.testing.assert_array_equal(shared, np.broadcast_to(shared[:1], shared.shape))  # w0 in every cell


def test_bad_frames(bundle):
    ed = StreamEditor(bundle, temporal_unet(bundle), "a green circle", StreamConfig(steps=2), height=64, width=64)
    state = ed.init_state()
    with pytest.raises(ValueError, match="uint8 frame of shape"):
        ed.step(state, np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8 frame of shape"):
        ed.step(state, np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match="multiple of"):
        StreamEditor(bundle, temporal_unet(bundle), "x", height=60, width=64)
    with pytest.raises(ValueError, match="empty"):
        StreamEditor(bundle, temporal_unet(bundle), " ", height=64, width=64)


def test_tiny_autoencoder_stream(bundle):
    from jaxvid.models.build import random_model
    from jaxvid.models.tiny_vae import AutoencoderTiny, TinyVAEConfig

    cfg = TinyVAEConfig(encoder_block_out_channels=(16,) * 4, decoder_block_out_channels=(16,) * 4,
                        num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))
    tiny = bundle.replace(vae=random_model(lambda r: AutoencoderTiny(cfg, rngs=r)))
    assert tiny.vae_scale == bundle.vae_scale == 8
    ed = StreamEditor(tiny, temporal_unet(tiny, "memory"), "a green circle", StreamConfig(steps=2, inversion="noise"),
                      height=64, width=64)
    out, _ = run_stream(ed, frames(2))
    assert out.shape == (2, 64, 64, 3)


def test_fully_distilled_lcm_stream():
    c = get_config("tiny")
    c.unet.time_cond_proj_dim = 32
    lcm = random_bundle(c)
    ed = StreamEditor(lcm, temporal_unet(lcm, "memory", perturb=0.05), "a green circle",
                      StreamConfig(steps=2, guidance=3.0), height=64, width=64)
    assert ed.static.branches == 1 and not ed.static.uncond  # guidance rides on the embedding
    out, _ = run_stream(ed, frames(2))
    assert out.shape == (2, 64, 64, 3)


@pytest.fixture(scope="module")
def bf16_bundle():
    c = get_config("tiny")
    c.dtype = c.param_dtype = "bfloat16"
    return random_bundle(c)


def test_bfloat16_edit_keeps_float32_latents(bf16_bundle):
    """bf16 networks (the GPU setting): the latent arithmetic stays float32."""
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    video = frames(2, size=64)
    r = FastVideoEditor(bf16_bundle, FastVideoEditConfig(steps=2, chunk_frames=2, keyframe_interval=2,
                                                         blend_downsample=2, blend_start_step=2)).edit(
        video, "a red circle", "a blue circle")
    assert r.frames.shape == video.shape and r.latents.dtype == jnp.float32


def test_bfloat16_stream_state_spec_never_changes(bf16_bundle):
    """bf16 stream: the state's shapes and dtypes never change (so the step never recompiles)."""
    m = wrap(bf16_bundle.unet, TemporalConfig(), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    ed = StreamEditor(bf16_bundle, m, "a blue circle", StreamConfig(steps=2, stream_batch=True), height=64, width=64)
    state = ed.init_state()
    spec = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    for f in frames(3):
        _, _, state = ed.step(state, f)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == spec


# ---- module-level references ----------------------------------------------------------------

def _layer_norm(x, scale, bias, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def _mha(x, ctx, attn, heads, mask=None):
    """Multi-head attention written from the definition (NumPy float64), diffusers layout."""
    p = {k: np.asarray(getattr(attn, k).kernel[...], np.float64) for k in ("to_q", "to_k", "to_v")}
    b = {k: np.asarray(getattr(attn, k).bias[...], np.float64) for k in ("to_q", "to_k", "to_v")}
    q, k, v = x @ p["to_q"] + b["to_q"], ctx @ p["to_k"] + b["to_k"], ctx @ p["to_v"] + b["to_v"]
    B, N, C = q.shape
    d = C // heads
    q, k, v = (a.reshape(B, a.shape[1], heads, d).transpose(0, 2, 1, 3) for a in (q, k, v))
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(d)
    if mask is not None:
        s = np.where(mask, s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    o = (w / w.sum(-1, keepdims=True)) @ v
    o = o.transpose(0, 2, 1, 3).reshape(B, N, C)
    out = attn.to_out[0]
    return o @ np.asarray(out.kernel[...], np.float64) + np.asarray(out.bias[...], np.float64)


def _perturbed(module, seed=0, std=0.3):
    from jaxvid.weights.convert import param_paths

    k = jax.random.key(seed)
    for var in param_paths(module).values():
        k, sub = jax.random.split(k)
        var.set_value(var.get_value() + std * jax.random.normal(sub, var.shape))
    return module


def test_memory_update_equals_eq_6_and_7_written_out():
    from jaxvid.models.build import init_model
    from jaxvid.models.memory import MemoryAttention

    mod = _perturbed(init_model(lambda r: MemoryAttention(16, 2, memory_hw=(2, 3), rngs=r)))
    # eq. 6: m_ij = w0 + FFN([i - h/2, j - w/2])
    ii, jj = np.meshgrid(np.arange(2) - 1.0, np.arange(3) - 1.5, indexing="ij")
    pos = np.stack([ii.ravel(), jj.ravel()], -1)
    f1, f2 = mod.pos_fc1, mod.pos_fc2
    hid = pos @ np.asarray(f1.kernel[...]) + np.asarray(f1.bias[...])
    hid = hid / (1 + np.exp(-hid))
    m0 = np.asarray(mod.w0[...]) + hid @ np.asarray(f2.kernel[...]) + np.asarray(f2.bias[...])
    np.testing.assert_allclose(np.asarray(mod.initial_memory(1))[0], m0, rtol=1e-5, atol=1e-6)
    # eq. 7: [F'; M'] = [F; M] + Attn(LN([F; M]))
    x = np.random.default_rng(0).standard_normal((1, 5, 16))
    cat = np.concatenate([x, m0[None]], 1)
    h = _layer_norm(cat, np.asarray(mod.norm.scale[...]), np.asarray(mod.norm.bias[...]))
    want = cat + _mha(h, h, mod.attn, 2)
    got_x, got_m = mod(jnp.asarray(x, jnp.float32), jnp.asarray(m0[None], jnp.float32))
    np.testing.assert_allclose(np.asarray(got_x), want[:, :5], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(got_m), want[:, 5:], rtol=1e-4, atol=1e-4)
    assert got_m.dtype == jnp.float32


@pytest.mark.parametrize("kind,length", [("window", 3), ("sliding", 4)])
def test_window_and_sliding_see_exactly_their_history(kind, length):
    """A frame's output depends on the last ``length`` frames (window: 3 cached + the current one
    as keys; sliding: the current + sliding-1 cached) and on nothing older."""
    from jaxvid.models.build import init_model
    from jaxvid.models.temporal import TEMPORAL_MODULES, TemporalConfig

    cfg = TemporalConfig(kind=kind, window=3, sliding=4)
    mod = _perturbed(init_model(lambda r: TEMPORAL_MODULES[kind](cfg, 8, 2, kw=dict(rngs=r))))
    xs = jax.random.normal(jax.random.key(1), (7, 1, 5, 8))

    def run(seq):
        state, outs = mod.init_state(1, 5), []
        for x in seq:
            y, state = mod(x, state)
            outs.append(np.asarray(y))
        return outs

    base = run(xs)
    changed = run(xs.at[0].add(1.0))  # perturb frame 0 only
    reach = [not np.array_equal(a, b) for a, b in zip(base, changed, strict=True)]
    window = 3 if kind == "window" else length - 1
    assert reach == [True] * (window + 1) + [False] * (7 - window - 1), reach


def test_linear_attention_recurrent_form_equals_parallel_form():
    from jaxvid.models.build import init_model
    from jaxvid.models.temporal import LinearAttention, TemporalConfig

    mod = _perturbed(init_model(lambda r: LinearAttention(TemporalConfig(kind="linear"), 8, 2, kw=dict(rngs=r))))
    T, N = 6, 3
    xs = np.asarray(jax.random.normal(jax.random.key(2), (T, 1, N, 8)), np.float64)
    state, rec = mod.init_state(1, N), []
    for x in xs:
        y, state = mod(jnp.asarray(x, jnp.float32), state)
        rec.append(np.asarray(y))
    # parallel: o_t = sum_{s<=t} (phi(q_t).phi(k_s)) v_s / sum_{s<=t} phi(q_t).phi(k_s), per position and head
    a = mod.attn
    h = _layer_norm(xs, np.asarray(mod.norm.scale[...]), np.asarray(mod.norm.bias[...]))
    W = {k: (np.asarray(getattr(a, k).kernel[...]), np.asarray(getattr(a, k).bias[...])) for k in ("to_q", "to_k", "to_v")}
    q, k, v = ((h @ W[n][0] + W[n][1]).reshape(T, N, 2, 4) for n in ("to_q", "to_k", "to_v"))
    phi = lambda z: np.where(z > 0, z + 1, np.exp(z))  # noqa: E731  elu + 1
    scores = np.einsum("tnhd,snhd->nhts", phi(q), phi(k)) * np.tril(np.ones((T, T)))[None, None]
    o = np.einsum("nhts,snhd->tnhd", scores, v) / (scores.sum(-1).transpose(2, 0, 1)[..., None] + 1e-6)
    out = o.reshape(T, N, 8) @ np.asarray(a.to_out[0].kernel[...]) + np.asarray(a.to_out[0].bias[...])
    np.testing.assert_allclose(np.stack(rec)[:, 0], xs[:, 0] + out, rtol=1e-4, atol=1e-4)


def test_guidance_formula_and_its_modes():
    """(1 + lambda) eps_c - lambda eps_uc on known rows; rcfg uses the residual noise instead."""
    from jaxvid.pipelines.svdiff import _Static, _update
    from jaxvid.schedulers.schedule import make_schedule

    s = make_schedule(set_alpha_to_one=True)
    rng = np.random.default_rng(0)
    c, u, x, resid, noise = (jnp.asarray(rng.standard_normal((1, 4, 4, 4)), jnp.float32) for _ in range(5))
    out = jnp.concatenate([c, u])
    static = lambda **kw: _Static(2, 2, kw.get("uncond", True), kw.get("rcfg", False), "noise", (32, 32, 3), False,  # noqa: E731
                                  None, False)
    from jaxvid.schedulers.lcm import lcm_step

    for lam in (0.0, 1.5):
        got = _update(s, out, 499, 259, False, x, x, x, resid, jnp.float32(lam), noise, static())
        want = lcm_step(s, (1 + lam) * np.asarray(c) - lam * np.asarray(u), 499, x, 259, noise, is_last=False)
        np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-5, atol=1e-5)
    got = _update(s, c, 499, 259, False, x, x, x, resid, jnp.float32(1.5), noise, static(uncond=False, rcfg=True))
    want = lcm_step(s, 2.5 * np.asarray(c) - 1.5 * np.asarray(resid), 499, x, 259, noise, is_last=False)
    np.testing.assert_allclose(np.asarray(got[0]), np.asarray(want[0]), rtol=1e-5, atol=1e-5)


def test_lambda_zero_cfg_equals_the_conditional_path_and_branches_keep_their_memories(bundle):
    model = temporal_unet(bundle, "memory", perturb=0.05)
    base = StreamConfig(steps=2, inversion="noise", guidance=0.0)
    cfg0 = StreamEditor(bundle, model, "a green circle", dataclasses.replace(base, guidance_mode="cfg"),
                        height=64, width=64)
    none = StreamEditor(bundle, model, "a green circle", dataclasses.replace(base, guidance_mode="none"),
                        height=64, width=64)
    assert (cfg0.static.branches, none.static.branches) == (2, 1)
    video = frames(3)
    a, state = run_stream(cfg0, video)
    b, _ = run_stream(none, video)
    # lambda = 0 weighs the unconditional row by exactly zero; the rows' batch differs (2 vs 1),
    # which may change float rounding by a few ulps before quantisation: one uint8 level
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    mem = np.asarray(state.temporal[0])  # [steps, branches, ...]: a memory per step and per branch
    assert mem.shape[:2] == (2, 2) and not np.allclose(mem[:, 0], mem[:, 1])
    with pytest.raises(ValueError, match="time_cond_proj_dim"):
        StreamEditor(bundle, model, "x", dataclasses.replace(base, guidance_mode="embedding"), height=64, width=64)


def test_fresh_memory_stream_equals_per_frame_editing(bundle):
    """Untrained memory (zero output projection): carrying it over frames changes nothing, so
    the stream equals editing every frame with its memory reset (the base model per frame)."""
    model = temporal_unet(bundle, "memory")
    ed = StreamEditor(bundle, model, "a green circle", StreamConfig(steps=2, inversion="noise"), height=64, width=64)
    video = frames(3)
    streamed, _ = run_stream(ed, video)
    fresh = ed.init_state()
    state, per_frame = ed.init_state(), []
    for f in video:
        out, _, state = ed.step(state.replace(temporal=jax.tree.map(jnp.copy, fresh.temporal)), f)
        per_frame.append(np.asarray(out))
    np.testing.assert_array_equal(streamed, np.stack(per_frame))  # bitwise: the residual adds exact zeros


def test_stream_batch_is_causal(bundle):
    model = temporal_unet(bundle, "memory", perturb=0.05)
    ed = StreamEditor(bundle, model, "a green circle", StreamConfig(steps=2, inversion="noise", stream_batch=True),
                      height=64, width=64)
    a = frames(5)
    b = a.copy()
    b[3:] = frames(2, 9)
    out_a, _ = run_stream(ed, a)
    out_b, _ = run_stream(ed, b)
    np.testing.assert_array_equal(out_a[:2], out_b[:2])  # finished before frame 3 arrived: bitwise equal
    assert not np.array_equal(out_a[2:], out_b[2:])
