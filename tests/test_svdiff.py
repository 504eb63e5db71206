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
def test_state_constant_over_200_frames_and_compiles_once(bundle, mode):
    model = temporal_unet(bundle, "memory", perturb=0.05)
    ed = StreamEditor(bundle, model, "a green circle", StreamConfig(steps=2, inversion=mode), height=64, width=64)
    state = ed.init_state()
    spec = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    n0 = None
    for i, f in enumerate(np.repeat(frames(4), 50, axis=0)):
        out, _, state = ed.step(state, f)
        if i == 0:
            n0 = TRACES["step"]
    assert int(state.frame_index) == 200
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


@pytest.mark.parametrize("mode", ["lcm", "consistency"])
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


def test_bfloat16_edit_and_stream_keep_shapes_and_dtypes():
    """bf16 networks (the GPU setting): latent arithmetic stays float32 and the stream state's
    spec never changes (so the step never recompiles)."""
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    c = get_config("tiny")
    c.dtype = c.param_dtype = "bfloat16"
    b = random_bundle(c)
    video = frames(2, size=128)
    r = FastVideoEditor(b, FastVideoEditConfig(steps=2, chunk_frames=2, keyframe_interval=2, blend_downsample=2,
                                               blend_start_step=2)).edit(video, "a red circle", "a blue circle")
    assert r.frames.shape == video.shape and r.latents.dtype == jnp.float32
    m = wrap(b.unet, TemporalConfig(), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    ed = StreamEditor(b, m, "a blue circle", StreamConfig(steps=2, stream_batch=True), height=64, width=64)
    state = ed.init_state()
    spec = jax.tree.map(lambda a: (a.shape, a.dtype), state)
    for f in frames(3):
        _, _, state = ed.step(state, f)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == spec
