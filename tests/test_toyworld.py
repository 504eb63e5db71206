"""The toy world (generator and ground truth) and the built-in model trained on it: it loads in
PyTorch too and gives the same image, and it edits correctly by measured thresholds."""

import numpy as np
import pytest

from jaxvid.data.toyworld import BACKGROUND_COLORS, COLORS, EDIT_KINDS, SHAPES, ToyWorld, hue_of, nearest_color
from jaxvid.pipelines.default import default_model_dir

needs_model = pytest.mark.skipif(default_model_dir() is None, reason="the built-in model is not in this checkout")


def test_generator_is_deterministic_random_access_and_captioned():
    w = ToyWorld(5, frames=6, size=32)
    a, b = w[3], ToyWorld(5, frames=6, size=32)[3]
    np.testing.assert_array_equal(a["video"], b["video"])
    assert a["video"].shape == (6, 32, 32, 3) and a["caption"] == b["caption"]
    assert not np.array_equal(w[3]["video"], w[4]["video"])
    scene = w.scene(3)
    cap = a["caption"]
    assert all(o.shape in cap and o.color in cap for o in scene.objects) and scene.background in cap
    assert len(SHAPES) >= 4 and len(COLORS) >= 6 and len(BACKGROUND_COLORS) >= 2
    motion = np.abs(np.diff(a["video"].astype(int), axis=0)).sum(axis=(1, 2, 3))
    assert (motion > 0).all()  # things move


@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_edits_change_one_attribute_over_the_same_motion(kind):
    e = ToyWorld(2, size=48).edit(4, kind, frames=5)
    src, tgt = e.source_scene, e.target_scene
    changed = [f for f in ("background", "texture") if getattr(src, f) != getattr(tgt, f)]
    changed += [f"{i}.{f}" for i, (a, b) in enumerate(zip(src.objects, tgt.objects, strict=True))
                for f in ("shape", "color", "start", "velocity", "size") if getattr(a, f) != getattr(b, f)]
    assert len(changed) == 1 and e.source_caption != e.target_caption
    diff = np.any(e.source != e.target, axis=-1)
    assert not (diff & ~e.mask).any()  # nothing changes outside the edit region
    assert (diff & e.mask).any()


def test_colour_names_from_hue():
    for name, rgb in COLORS.items():
        assert nearest_color(rgb) == name
    assert hue_of((255, 0, 0)) == 0 and hue_of((0, 0, 255)) == 240


@needs_model
def test_built_in_model_loads_in_diffusers_and_gives_the_same_image():
    """The shipped folder is an ordinary diffusers folder: StableDiffusionPipeline + the LCM-LoRA
    through load_lora_weights, and one LCM step from the same latents equals jaxvid's."""
    import jax.numpy as jnp
    import torch
    from diffusers import LCMScheduler, StableDiffusionPipeline

    from jaxvid.pipelines.default import default_bundle
    from jaxvid.pipelines.image import ImagePipeline

    folder = default_model_dir()
    pipe = StableDiffusionPipeline.from_pretrained(folder, torch_dtype=torch.float32, safety_checker=None)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(folder / "lcm_lora")
    pipe.fuse_lora()
    latents = np.random.default_rng(0).standard_normal((1, 16, 16, 4)).astype(np.float32)
    prompt = "a red circle moving on a blue background"
    ref = pipe(prompt, num_inference_steps=1, guidance_scale=1.0, latents=torch.from_numpy(latents.transpose(0, 3, 1, 2)),
               output_type="np", height=64, width=64).images[0]
    ours = ImagePipeline(default_bundle()).txt2img(prompt, steps=1, guidance_scale=1.0, latents=jnp.asarray(latents))[0]
    # fp16 weights fused in float32 on both sides; measured max difference: one uint8 level
    assert np.abs(ours.astype(int) - np.round(ref * 255).astype(int)).max() <= 2


@pytest.fixture(scope="module")
def model():
    from jaxvid.pipelines.default import default_bundle

    return default_bundle()


@needs_model
def test_fastvideoedit_colour_edit_is_right_and_leaves_the_rest(model):
    """Colour edits of 8 fixed held-out clips (seed 7; training used seed 0). Measured on the
    committed model: attribute accuracy 0.44, PSNR outside the edit region 24.2 dB (over 12
    clips: 0.49 and 24.0). An edit that changes nothing scores accuracy 0 by construction."""
    from configs.edit import get_config
    from jaxvid.metrics.toyworld import toy_metrics
    from jaxvid.pipelines import fastvideoedit
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    ed = FastVideoEditor(model, FastVideoEditConfig(**get_config("attribute,builtin").edit.to_dict()))
    world, scores = ToyWorld(7, size=64), []
    compiled = fastvideoedit._edit_step._cache_size()
    for index in range(8):
        e = world.edit(index, "object_color", frames=8)
        scores.append(toy_metrics(ed.edit(e.source, e.source_caption, e.target_caption).frames, e))
    # one executable for every step of every clip: the loaded weights' placement (committed or
    # not) must not change between steps (it once did after LoRA fusion: two compilations)
    assert fastvideoedit._edit_step._cache_size() - compiled <= 1
    acc = np.mean([s["attr_acc"] for s in scores])
    psnr_out = np.mean([s["psnr_out"] for s in scores])
    assert acc >= ATTR_ACC_MIN, [s["attr_acc"] for s in scores]
    assert psnr_out >= PSNR_OUT_MIN, [s["psnr_out"] for s in scores]


@needs_model
def test_identity_edit_reproduces_the_source(model):
    """Target prompt = source prompt. Measured: 20.7 dB mean over these 4 clips (18.7-22.5;
    23.2 over 12 clips), bounded by the 4x autoencoder and 4 LCM steps."""
    from configs.edit import get_config
    from jaxvid.metrics.toyworld import psnr
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    ed = FastVideoEditor(model, FastVideoEditConfig(**get_config("attribute,builtin").edit.to_dict()))
    vals = []
    for index in range(4):
        e = ToyWorld(7, size=64).edit(index, "object_color", frames=8)
        vals.append(psnr(ed.edit(e.source, e.source_caption, e.source_caption).frames, e.source))
    assert np.mean(vals) >= IDENTITY_PSNR_MIN, vals


def test_svdiff_stage_objectives():
    """The shipped memory trains through the stream with the temporal-consistency loss; the
    baselines and ablations (and ``objective=paper``: the memory shipped before) with the paper's
    denoising objective; any other objective is refused."""
    from configs.toyworld import get_config

    c = get_config("svdiff")
    assert (c.objective.noising, c.objective.stream_loss, c.data.source, c.data.frames) == (
        "lcm_stream", "steady", "toyworld_edits", 8)
    for arg in ("svdiff,memory,objective=paper", "svdiff,window", "svdiff,memory,hw=16"):
        c = get_config(arg)
        assert (c.objective.noising, c.data.source) == ("gaussian", "toyworld"), arg
    assert (get_config("svdiff,memory,objective=paper").steps, get_config("svdiff,memory,objective=paper").data.frames) == (300, 16)
    assert get_config("svdiff,window,objective=stream").objective.noising == "lcm_stream"
    with pytest.raises(ValueError, match="objective"):
        get_config("svdiff,memory,objective=denoise")


def _trained_objective():
    """The objective and stream the shipped memory was trained with (configs/toyworld.py:svdiff)."""
    from configs.stream import get_config as stream_config
    from configs.toyworld import get_config
    from jaxvid.pipelines.svdiff import StreamConfig
    from jaxvid.training.tasks.svdiff import ObjectiveConfig

    recipe = get_config("svdiff")
    objective = ObjectiveConfig(**recipe.objective.to_dict())
    stream = stream_config().stream.to_dict()
    stream.update(steps=objective.lcm_steps, guidance=objective.guidance, inversion=objective.inversion)
    return recipe, objective, StreamConfig(**stream)


@needs_model
def test_trained_memory_lowers_the_held_out_objective(model):
    """What the memory was trained for: its objective (the stream unrolled over edit pairs, the
    temporal-consistency loss) on held-out toy videos (seed 123) is lower with the trained memory
    than with a zero memory (the memory-free stream). Measured: ratio 0.73 on these three batches
    at 8 frames (the training length), 0.77 over six; 0.71 over six at 16 frames; lower on all 12."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxvid.data.toyworld import ToyEdits
    from jaxvid.models.temporal import temporal_unet
    from jaxvid.pipelines.default import default_temporal
    from jaxvid.text import tokenize
    from jaxvid.training.tasks.svdiff import SVDiffTask
    from jaxvid.weights.temporal import load_temporal, read_temporal_config

    recipe, objective, _ = _trained_objective()
    folder = default_temporal("memory")
    tcfg = read_temporal_config(folder)
    task = SVDiffTask(model, temporal=tcfg, objective=objective)
    trained_model = load_temporal(temporal_unet(model.unet, tcfg), folder)
    trained = nnx.state(trained_model.temporal).to_pure_dict()
    zero = task.init_params(jax.random.key_data(jax.random.key(0)))
    loss = jax.jit(lambda p, batch, k: task.loss_and_grads(p, task.frozen, batch, k)[0])
    edits, ratios = ToyEdits(ToyWorld(123, frames=recipe.data.frames, size=64)), []
    for i in (0, 2, 4):
        items = [edits[i], edits[i + 1]]
        batch = {k: jnp.asarray(np.stack([x[k] for x in items])) for k in ("video", "edited")}
        batch["ids"] = jnp.asarray(np.stack([tokenize(model.tokenizer, x["caption"], max_length=77)[0] for x in items]))
        key = jax.random.key(i)
        ratios.append(float(loss(trained, batch, key)) / float(loss(zero, batch, key)))
    assert max(ratios) < 1.0 and np.mean(ratios) <= MEMORY_LOSS_RATIO_MAX, ratios


def _stream_scores(model, stream) -> dict:
    """(temporal PSNR, colour accuracy) of the trained and the zero memory on 6 held-out clips
    (seed 7, background-colour edits, 24 frames)."""
    from jaxvid.evaluation.datasets import EvalItem
    from jaxvid.evaluation.methods import build
    from jaxvid.metrics.toyworld import toy_metrics

    results = {}
    for name in ("svdiff", "svdiff-zero"):
        m = build(name, model, model_dir=default_model_dir(), edit_config=None, stream_config=stream)
        vals = []
        for index in range(2, 8):
            e = ToyWorld(7, size=64).edit(index, "background_color", frames=24)
            out, _ = m.run(EvalItem(str(index), e.source, e.source_caption, e.target_caption, e.kind, e))
            metrics = toy_metrics(out, e)
            vals.append((metrics["temporal_psnr"], metrics["attr_acc"]))
        results[name] = np.mean(vals, axis=0)
    return results


@pytest.mark.slow
@needs_model
def test_trained_memory_is_more_temporally_consistent_than_none(model):
    """In the stream the memory was trained through (SVDiff's: LCM inversion, 2 steps, lambda 1).
    Measured: temporal PSNR 26.28 dB vs 24.82 with a zero memory, colour accuracy 0.12 vs 0.13."""
    results = _stream_scores(model, _trained_objective()[2])
    # steadier *and still editing*: a memory that reproduces the source is perfectly steady (the
    # source has the ground truth's motion) but edits nothing, as one trained on inverted latents did;
    # steadier by a visible margin, not by float noise (a memory that cancelled out: +0.001 dB)
    assert results["svdiff"][0] > results["svdiff-zero"][0] + MEMORY_PSNR_GAIN_MIN, results
    assert results["svdiff"][1] >= results["svdiff-zero"][1] - MEMORY_ACC_DROP_MAX, results


@pytest.mark.slow
@needs_model
def test_trained_memory_does_no_harm_in_the_builtin_stream(model):
    """``jaxvid stream``'s preset for this model (configs/stream.py:builtin, consistency mode),
    where a memory effect common to the rows cancels. Measured: 30.97 dB vs 31.00 with a zero
    memory, colour accuracy 0.33 both (the paper-objective memory shipped before: 30.23, 0.17)."""
    from configs.stream import get_config
    from jaxvid.pipelines.svdiff import StreamConfig

    results = _stream_scores(model, StreamConfig(**get_config("builtin").stream.to_dict()))
    assert results["svdiff"][0] >= results["svdiff-zero"][0] - MEMORY_PSNR_LOSS_MAX, results
    assert results["svdiff"][1] >= results["svdiff-zero"][1] - MEMORY_ACC_DROP_MAX, results


# thresholds: the measured numbers above, with margin for another CPU's rounding and per-frame
# colour calls that sit near a decision boundary
ATTR_ACC_MIN = 0.25
PSNR_OUT_MIN = 21.0
IDENTITY_PSNR_MIN = 18.5
MEMORY_LOSS_RATIO_MAX = 0.9
MEMORY_PSNR_GAIN_MIN = 0.5  # measured +1.45 dB
MEMORY_PSNR_LOSS_MAX = 0.2  # measured -0.04 dB
MEMORY_ACC_DROP_MAX = 0.05  # measured -0.014 and 0.000
