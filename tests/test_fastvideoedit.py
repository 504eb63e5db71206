"""FastVideoEdit invariants on a tiny random SD-architecture model (any weights must satisfy them)."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxvid.pipelines.default import random_bundle
from jaxvid.pipelines.fastvideoedit import TRACES, FastVideoEditConfig, FastVideoEditor
from jaxvid.text import PromptTooLongError

SRC = "a red circle moving on a blue background"
TGT = "a green circle moving on a blue background"
# tiny model: attention at 16x16 and 8x8 latents; blend from the 8x8 level
BASE = FastVideoEditConfig(steps=4, chunk_frames=4, keyframe_interval=2, blend_downsample=2, blend_start_step=3,
                           blend_threshold=0.2)


@pytest.fixture(scope="module")
def bundle():
    return random_bundle("tiny")


@pytest.fixture(scope="module")
def z0():
    return jax.random.normal(jax.random.key(0), (4, 16, 16, 4))


def run(bundle, z0, cfg, src=SRC, tgt=TGT, **kw):
    return FastVideoEditor(bundle, cfg).edit_latents(z0, src, tgt, trace=True, **kw)


@pytest.mark.parametrize("tokenflow", [False, True])
def test_identity_edit_reconstructs_source_at_every_step(bundle, z0, tokenflow):
    cfg = dataclasses.replace(BASE, source_guidance=2.0, target_guidance=2.0, source_cross_frame=True,
                              tokenflow=tokenflow)
    out, trace = run(bundle, z0, cfg, tgt=SRC)
    err = float(np.max(np.abs(np.asarray(trace.x0_edit) - np.asarray(z0)[None])))
    assert err <= 1e-5, err
    assert float(np.max(np.asarray(trace.mask))) == 0.0  # no edited tokens -> nothing to blend


def test_blending_keeps_background_branch_outside_mask(bundle, z0):
    _, tr = run(bundle, z0, BASE)
    mask, ze, zb = (np.asarray(a) for a in (tr.mask, tr.z_edit, tr.z_bg))
    on = mask[2:]  # blending from step 3 (index 2)
    assert 0.0 < on.mean() < 1.0, "threshold should give a mixed mask on this model"
    outside = np.broadcast_to(on == 0, ze[2:].shape)
    np.testing.assert_array_equal(ze[2:][outside], zb[2:][outside])
    inside = np.broadcast_to(on == 1, ze[2:].shape)
    assert np.abs(ze[2:][inside] - zb[2:][inside]).max() > 1e-3
    assert mask[:2].max() == 0.0


def _first_difference(a, b, tol=1e-6):
    d = np.abs(np.asarray(a) - np.asarray(b)).reshape(len(a), -1).max(axis=1)
    return int(np.argmax(d > tol)) if (d > tol).any() else None


@pytest.mark.parametrize(
    "field,lo,hi,first",
    [
        ("cross_fraction", 0.25, 0.5, 1),  # Re-CA on steps [0,1) vs [0,2): first differs at step 1
        ("self_fraction", 0.25, 0.5, 1),  # mutual self-attention early phase
        ("self_fraction", 0.0, 0.25, 0),
        ("blend_start_step", 4, 3, 3),  # blending from step 3 changes z at the end of step 3 -> x0 of step 4
    ],
)
def test_controls_act_only_within_their_fraction(bundle, z0, field, lo, hi, first):
    _, a = run(bundle, z0, dataclasses.replace(BASE, **{field: lo}))
    _, b = run(bundle, z0, dataclasses.replace(BASE, **{field: hi}))
    assert _first_difference(a.x0_edit, b.x0_edit) == first


def test_tokenflow_all_keyframes_equals_no_propagation(bundle, z0):
    common = dict(BASE.__dict__, chunk_frames=4)
    a, _ = run(bundle, z0, FastVideoEditConfig(**{**common, "tokenflow": True, "keyframe_interval": 1}))
    b, _ = run(bundle, z0, FastVideoEditConfig(**{**common, "tokenflow": False}))
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-4


# without TokenFlow in the default suite only through the test_identity_* cases (suite time)
@pytest.mark.parametrize("tokenflow", [pytest.param(False, marks=pytest.mark.slow), True])
def test_shared_noise_identical_frames_give_identical_edits(bundle, tokenflow):
    z = jax.numpy.repeat(jax.random.normal(jax.random.key(1), (1, 16, 16, 4)), 4, axis=0)
    cfg = dataclasses.replace(BASE, tokenflow=tokenflow)
    out, _ = run(bundle, z, cfg)
    out = np.asarray(out)
    assert np.abs(out - out[:1]).max() <= 1e-5
    per_frame, _ = run(bundle, z, dataclasses.replace(cfg, shared_noise=False))
    per_frame = np.asarray(per_frame)
    assert np.abs(per_frame - per_frame[:1]).max() > 1e-3  # the released code's per-frame noise breaks it


def test_long_videos_chunk_and_compile_once(bundle):
    z = jax.random.normal(jax.random.key(2), (6, 16, 16, 4))  # 2 chunks of 4, the last padded
    ed = FastVideoEditor(bundle, BASE)
    a, _ = ed.edit_latents(z, SRC, TGT)
    n = TRACES["edit"]
    b, _ = ed.edit_latents(z, "a yellow square on a grey floor", "a purple square on a grey floor")
    ed2 = FastVideoEditor(bundle, dataclasses.replace(BASE, target_guidance=3.5, blend_threshold=0.5, seed=4,
                                                       self_fraction=0.5, replace_scale=1.5))
    c, _ = ed2.edit_latents(z, SRC, TGT)
    assert TRACES["edit"] == n, "prompts, guidance, thresholds, fractions and seeds must not recompile"
    assert a.shape == (6, 16, 16, 4) and np.isfinite(np.asarray(a)).all()
    assert not np.allclose(np.asarray(a), np.asarray(c))


def test_bad_prompts(bundle, z0):
    ed = FastVideoEditor(bundle, BASE)
    with pytest.raises(ValueError, match="empty"):
        ed.edit_latents(z0, SRC, "  ")
    with pytest.raises(PromptTooLongError):
        ed.edit_latents(z0, SRC, " ".join(["green circle"] * 50))
    with pytest.raises(ValueError, match="do not occur"):
        FastVideoEditor(bundle, dataclasses.replace(BASE, blend_words=("purple",))).edit_latents(z0, SRC, TGT)


@pytest.mark.slow  # the embedding path itself is covered by test_guidance_modes_compute_what_they_claim
def test_fully_distilled_lcm(z0):
    """On a guidance-embedding LCM (no CFG pairs) the identity invariant still holds when both
    branches use the same guidance, and a real edit runs."""
    from configs.models import get_config

    c = get_config("tiny")
    c.unet.time_cond_proj_dim = 32
    lcm = random_bundle(c)
    cfg = dataclasses.replace(BASE, source_guidance=4.0, target_guidance=4.0, source_cross_frame=True)
    _, trace = run(lcm, z0, cfg, tgt=SRC)
    assert float(np.max(np.abs(np.asarray(trace.x0_edit) - np.asarray(z0)[None]))) <= 1e-5
    out, _ = run(lcm, z0, dataclasses.replace(BASE, target_guidance=4.0))
    assert np.isfinite(np.asarray(out)).all()


def test_guidance_modes_compute_what_they_claim(bundle, z0):
    from configs.models import get_config

    layouts = {}
    c = get_config("tiny")
    c.unet.time_cond_proj_dim = 32
    distilled = random_bundle(c)
    for name, b in (("sd", bundle), ("lcm", distilled)):
        for mode in ("auto", "cfg", "embedding", "none"):
            try:
                layouts[name, mode] = FastVideoEditor(b, dataclasses.replace(BASE, guidance_mode=mode)).guidance_layout()
            except ValueError as e:
                layouts[name, mode] = str(e)
    assert layouts["sd", "auto"] == (2, None) and layouts["sd", "none"] == (1, None)
    assert "time_cond_proj_dim" in layouts["sd", "embedding"]
    assert layouts["lcm", "auto"] == (1, 32) == layouts["lcm", "embedding"]
    assert layouts["lcm", "cfg"] == (2, None)  # the released setup: CFG pairs on LCM_Dreamshaper_v7
    assert FastVideoEditor(bundle, dataclasses.replace(BASE, source_guidance=1.0, target_guidance=1.0)
                           ).guidance_layout() == (1, None)  # auto: both scales 1 -> no pairs
    # with guidance 1 the CFG mix u + 1 (c - u) is the conditional prediction: cfg == none
    one = dataclasses.replace(BASE, source_guidance=1.0, target_guidance=1.0, tokenflow=False, blend_start_step=None)
    a, _ = run(bundle, z0, dataclasses.replace(one, guidance_mode="cfg"))
    b, _ = run(bundle, z0, dataclasses.replace(one, guidance_mode="none"))
    # measured 1e-6 on values up to ~20 (u + (c - u) rounds differently from c)
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-4


@pytest.mark.parametrize("size", [(64, 96), (96, 160)])
def test_non_square_frames_edit_and_blend(bundle, size):
    """Non-square latents: the mask comes from the explicit rows x cols grid (a square-root guess
    crashed on 512x640 and scrambled 576x1024)."""
    h, w = size[0] // 8, size[1] // 8
    z = jax.random.normal(jax.random.key(4), (2, h, w, 4))
    cfg = dataclasses.replace(BASE, chunk_frames=2, keyframe_interval=2, blend_start_step=2, tokenflow=False)
    out, trace = run(bundle, z, cfg)
    assert out.shape == z.shape and trace.mask.shape == (4, 2, h, w, 1)
    on = np.asarray(trace.mask[1:])
    assert 0 < on.mean() < 1


def test_released_profile_runs_with_its_own_mask(bundle, z0):
    # a random model's attention is nearly flat: after each frame's max-normalisation only a high
    # threshold splits it
    cfg = FastVideoEditConfig.released(**{**BASE.__dict__, "profile": "released", "shared_noise": False,
                                          "change_words": ("red circle",), "blend_threshold": 0.97})
    out, trace = run(bundle, z0, cfg)
    mask = np.asarray(trace.mask)
    assert mask[:2].max() == 0 and 0 < mask[2:].mean() < 1  # from step 3 (index 2) on
    ze, zs = np.asarray(trace.z_edit[2:]), np.asarray(trace.z_src[2:])
    outside = np.broadcast_to(mask[2:] == 0, ze.shape)
    np.testing.assert_array_equal(ze[outside], zs[outside])  # outside: the re-noised source, by construction
