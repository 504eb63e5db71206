"""SVDiff training: what trains, the clip-by-clip objective against a plain transcription, remat,
compile-once, NaN handling, exact resume across processes, and the trained memory in ``stream``."""

import functools
import os
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.models import get_config
from jaxvid.models.temporal import TemporalConfig
from jaxvid.pipelines.default import random_bundle
from jaxvid.schedulers.schedule import add_noise
from jaxvid.sharding import make_mesh
from jaxvid.training import trainer as trainer_lib
from jaxvid.training.tasks.svdiff import ObjectiveConfig, SVDiffTask
from jaxvid.training.optim import OptimConfig
from jaxvid.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def micro():
    return random_bundle(get_config("micro"))


# the optimizer of `_train_args` below (configs/svdiff_train.py:tiny at lr 0.01): the fixture's step
# is then the very program the CLI runs compile, which they take from the compilation cache
OPTIM = OptimConfig(learning_rate=1e-2, warmup_steps=10)


def make_trainer(bundle, **objective):
    task = SVDiffTask(bundle, temporal=TemporalConfig(memory_hw=(2, 2)), objective=ObjectiveConfig(clip_frames=2, **objective))
    return Trainer(task, optim=OPTIM, total_steps=100, mesh=make_mesh({"data": -1}))


def batch(trainer, b=2, n=4, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.tile(np.asarray(trainer.task.uncond_ids), (b, 1))
    ids[:, 1] = 320 + np.arange(b)  # a word per video, so captions differ
    out = {"video": rng.integers(0, 255, (b, n, 16, 16, 3), dtype=np.uint8), "ids": ids}
    if "edited" in trainer.batch_keys:  # an edit pair: another video as the ground-truth edit
        out["edited"] = rng.integers(0, 255, (b, n, 16, 16, 3), dtype=np.uint8)
    return out


@pytest.fixture(scope="module")
def trained(micro):
    """A micro trainer after three steps (shared: the step compiles once for these tests)."""
    tr = make_trainer(micro)
    state0 = tr.init(0)
    init_params = jax.device_get(state0.params)
    frozen = jax.device_get(tr.frozen)
    n0 = trainer_lib.TRACES["step"]
    state, losses = state0, []
    for i in range(3):
        state, m = tr.step(state, batch(tr, seed=i))
        losses.append(float(m["loss"]))
    return dict(trainer=tr, state=state, init=init_params, frozen=frozen, traces=trainer_lib.TRACES["step"] - n0,
                losses=losses)


def test_only_temporal_parameters_train_and_the_base_stays_bit_identical(trained, micro):
    tr, state = trained["trainer"], trained["state"]
    assert int(state.step) == 3 and trained["traces"] == 1, "one compilation for the whole run"
    # every temporal parameter moved (the zero output projections first, then everything behind them)
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), jax.device_get(state.params), trained["init"])
    assert all(jax.tree.leaves(moved)), moved
    # the frozen networks are bit-identical to what was loaded, after any number of steps
    for a, b in zip(jax.tree.leaves(jax.device_get(tr.frozen)), jax.tree.leaves(trained["frozen"]), strict=True):
        np.testing.assert_array_equal(a, b)
    unet = nnx.state(micro.unet).to_pure_dict()
    for a, b in zip(jax.tree.leaves(jax.device_get(tr.frozen[0])), jax.tree.leaves(unet), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert np.isfinite(trained["losses"]).all()


def invert_plainly(base, s, empty, table, z0):
    """The LCM inversion written out (not ``lcm_invert``): DDIM steps up the ascending
    timesteps with the base UNet and the empty prompt."""
    x, a_from = z0, s.final_alpha_cumprod
    for t_to in list(table)[::-1]:  # ascending
        e = base(x, jnp.full((z0.shape[0],), t_to), empty)
        a_to = s.alphas_cumprod[t_to]
        x = jnp.sqrt(a_to) * (x - jnp.sqrt(1 - a_from) * e) / jnp.sqrt(a_from) + jnp.sqrt(1 - a_to) * e
        a_from = a_to
    return x


def reference(trainable, frozen, data, key, tr, *, stop: bool):
    """A plain transcription of the objective: Python loops over clips and frames, one total
    loss differentiated once (``stop``: the state entering each clip is a constant). For
    ``noising="lcm_inversion"`` (and ``"lcm_edit"``) the inversion is written out here too (not
    ``lcm_invert``)."""
    from jaxvid.pipelines.autoencode import encode_latents
    from jaxvid.schedulers import lcm_timesteps

    g, s, cfg = tr.task.graphs, tr.task.bundle.schedule, tr.task.objective
    video, ids = data["video"], data["ids"]
    B, N = video.shape[:2]
    L = cfg.clip_frames
    K = N // L
    k_t, k_drop, k_clips = jax.random.split(key, 3)
    table = lcm_timesteps(cfg.lcm_steps, original_inference_steps=cfg.original_inference_steps)
    lcm = cfg.noising in ("lcm_inversion", "lcm_edit")
    if lcm:
        t = jnp.asarray(table)[jax.random.randint(k_t, (B,), 0, len(table))]
        inverted_video = (t == table[0]) & jax.random.bernoulli(jax.random.fold_in(key, 2), cfg.inversion_share, (B,))
    else:
        t = jax.random.randint(k_t, (B,), 0, s.num_train_timesteps)
    drop = jax.random.uniform(k_drop, (B,)) < cfg.caption_dropout
    encoder = nnx.merge(g.text, frozen[2])
    text = encoder(jnp.where(drop[:, None], tr.task.uncond_ids[None], ids)).last_hidden_state
    empty = jnp.broadcast_to(encoder(tr.task.uncond_ids[None]).last_hidden_state, text.shape)
    vae, base = nnx.merge(g.vae, frozen[1]), nnx.merge(g.unet, frozen[0])

    inverted = functools.partial(invert_plainly, base, s, empty, table)

    def total(params):
        model = g.model(frozen[0], params)
        state = model.init_state(B, (8, 8))
        clip_losses = []
        for k, ck in enumerate(jax.random.split(k_clips, K)):
            if stop and k > 0:
                state = jax.lax.stop_gradient(state)
            frame_losses = []
            for j, fk in enumerate(jax.random.split(ck, L)):
                k_enc, k_noise = jax.random.split(fk)
                z_in = encode_latents(vae, video[:, k * L + j].astype(jnp.float32) / 127.5 - 1.0, k_enc)
                z0 = z_in  # the clean latent the target points to: for lcm_edit, the edited frame's
                if cfg.noising == "lcm_edit":
                    z0 = encode_latents(vae, data["edited"][:, k * L + j].astype(jnp.float32) / 127.5 - 1.0, k_enc)
                if cfg.noising == "gaussian":
                    eps = jax.random.normal(k_noise, z0.shape)
                else:  # one noise per video, the same at every frame
                    eps = jax.random.normal(jax.random.fold_in(key, 1), z0.shape)
                x = add_noise(s, z0, eps, t)
                if lcm:
                    x = jnp.where(inverted_video[:, None, None, None], inverted(z_in), x)
                    a = s.alphas_cumprod[t][:, None, None, None]
                    eps = (x - jnp.sqrt(a) * z0) / jnp.sqrt(1 - a)
                pred, state = model(x, t, text, state)
                if cfg.loss_space == "x0":  # epsilon-prediction micro model: the clean latent it implies
                    a = s.alphas_cumprod[t][:, None, None, None]
                    frame_losses.append(jnp.mean(((x - jnp.sqrt(1 - a) * pred) / jnp.sqrt(a) - z0) ** 2))
                else:
                    frame_losses.append(jnp.mean((pred - eps) ** 2))
            clip_losses.append(jnp.mean(jnp.stack(frame_losses)))
        return jnp.mean(jnp.stack(clip_losses)), clip_losses

    (loss, clips), grads = jax.value_and_grad(total, has_aux=True)(trainable)
    return loss, grads


@functools.partial(jax.jit, static_argnums=0)
def loss_and_grads(task, params, frozen, data, key):
    """The task's objective, jitted with everything as arguments (closed-over weights would be
    compiled in as constants): tests calling it with one task and shapes share one program."""
    return task.loss_and_grads(params, frozen, data, key)[:2]


def _objective_and_references(trained, *, leak: bool):
    """Our scan objective and the plain transcription with the clip-boundary stop (and, with
    ``leak``, without it), on the same perturbed parameters, data and key."""
    tr = trained["trainer"]
    params, data, key = trained["init"], batch(tr, n=4), jax.random.key(3)
    params = jax.tree.map(lambda a: a + 0.05 * np.random.default_rng(0).standard_normal(a.shape, np.float32), params)
    ours = loss_and_grads(tr.task, params, tr.frozen, data, key)
    refs = jax.jit(lambda p, f, d, k: tuple(reference(p, f, d, k, tr, stop=stop) for stop in (True, False)[: 1 + leak]))(
        params, tr.frozen, data, key)
    return ours, refs


def test_scan_objective_equals_plain_loops_with_the_clip_boundary_stopped(trained):
    """The scan (clips chained through the memory, gradients stopped at each boundary) equals a
    plain transcription that stops the state entering each clip: no gradient crosses a clip.
    That this comparison would see a leak is shown by the slow twin below."""
    ours, ((ref_loss, ref_grads),) = _objective_and_references(trained, leak=False)
    # measured: |loss diff| 0, grads within 2e-7 of values up to ~0.1 (float32 sums in another order)
    np.testing.assert_allclose(float(ours[0]), float(ref_loss), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)


@pytest.mark.slow
def test_a_gradient_crossing_a_clip_would_be_seen(trained):
    """Without the stop at the clip boundary the initial-memory parameters get more gradient,
    far more than the scan differs from the stopped reference: so the fast test above, matching
    the stopped reference, shows that none crosses. (Slow: a second unrolled reference.)"""
    ours, ((_, ref_grads), (_, leak_grads)) = _objective_and_references(trained, leak=True)
    w0 = lambda g: np.concatenate([np.ravel(g[i]["memory"]["w0"]) for i in range(len(g))])  # noqa: E731
    assert np.abs(w0(leak_grads) - w0(ref_grads)).max() > 10 * np.abs(w0(ours[1]) - w0(ref_grads)).max() + 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("noising,share,space", [("fixed", 1.0, "target"), ("lcm_inversion", 1.0, "target"),
                                                 ("lcm_inversion", 0.2, "target"), ("lcm_edit", 1.0, "target"),
                                                 ("lcm_edit", 1.0, "x0")])
def test_stream_matched_noising_equals_plain_loops(trained, micro, noising, share, space):
    """The objective's ``noising`` options against the plain transcription: one noise per video
    (``fixed``), and LCM-inverted latents at the first LCM timestep with the noise they hold as
    the target (``lcm_inversion``; this key draws both of its timesteps, so both branches run),
    for all or a share of the videos; ``lcm_edit``: the source inverted, the edited video's
    latent as the clean target; ``x0``: the loss on the clean latent the prediction implies."""
    tr = make_trainer(micro, noising=noising, lcm_steps=2, inversion_share=share, loss_space=space)
    params, data, key = trained["init"], batch(tr, n=4), jax.random.key(3)
    params = jax.tree.map(lambda a: a + 0.05 * np.random.default_rng(0).standard_normal(a.shape, np.float32), params)
    if noising != "fixed":
        picks = jax.random.randint(jax.random.split(key, 3)[0], (2,), 0, 2)
        assert sorted(np.asarray(picks).tolist()) == [0, 1], "the key must draw both timesteps"
        inverted = np.asarray(jax.random.bernoulli(jax.random.fold_in(key, 2), share, (2,)))[np.argmin(picks)]
        assert inverted == (share == 1.0), "with a share < 1 the key must leave the first-timestep video noised"
    ours = loss_and_grads(tr.task, params, tr.frozen, data, key)
    ref_loss, ref_grads = jax.jit(lambda p, f, d, k: reference(p, f, d, k, tr, stop=True))(params, tr.frozen, data, key)
    # measured: as the gaussian objective's test (loss equal to ~1e-7 relative, grads within float32 noise)
    np.testing.assert_allclose(float(ours[0]), float(ref_loss), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)


def stream_reference(trainable, frozen, data, key, tr):
    """A plain transcription of ``noising="lcm_stream"``: per frame, the source latent (posterior
    mean) inverted up the LCM timesteps with the base UNet and the empty prompt, then each LCM
    step written out — CFG rows [caption; empty], each step with its own state, the consistency
    boundary scalings, re-noising with the video's noise of that step — and the MSE of every
    step's denoised latent to the edited frame's; one total loss differentiated once. Consistency
    mode: no inversion; both branches start from the video's noise and a third row, the source
    with the empty prompt, corrects the edit's noise by ``e_cons - eps_src`` (FastVideoEdit's
    eq. written out) and is itself re-noised onto the source latent. ``steady``: see the test."""
    from jaxvid.pipelines.autoencode import encode_latents
    from jaxvid.schedulers import lcm_timesteps

    g, s, cfg = tr.task.graphs, tr.task.bundle.schedule, tr.task.objective
    video, edited, ids = data["video"], data["edited"], data["ids"]
    B, N = video.shape[:2]
    L, lam = cfg.clip_frames, cfg.guidance
    table = [int(v) for v in lcm_timesteps(cfg.lcm_steps, original_inference_steps=cfg.original_inference_steps)]
    encoder = nnx.merge(g.text, frozen[2])
    text = encoder(ids).last_hidden_state
    empty = jnp.broadcast_to(encoder(tr.task.uncond_ids[None]).last_hidden_state, text.shape)
    vae, base = nnx.merge(g.vae, frozen[1]), nnx.merge(g.unet, frozen[0])
    latent = lambda v: encode_latents(vae, v.astype(jnp.float32) / 127.5 - 1.0)  # noqa: E731

    inverted = functools.partial(invert_plainly, base, s, empty, table)

    cons, steady = cfg.inversion == "consistency", cfg.stream_loss == "steady"
    rows = 3 if cons else 2
    ctx = jnp.concatenate([text, empty] + [empty] * cons)

    def stream_plainly(unet, src):
        """Every LCM step's denoised latent for one frame, ``unet(step, rows, t) -> out``."""
        if cons:
            x = xs = jax.random.normal(jax.random.fold_in(key, 3), src.shape)
        else:
            x, xs = inverted(src), None
        dens = []
        for i, t in enumerate(table):
            out = unet(i, jnp.concatenate([x, x] + [xs] * cons), t)
            eps = (1 + lam) * out[:B] - lam * out[B:2 * B]
            a = s.alphas_cumprod[t]
            noise = jax.random.normal(jax.random.fold_in(jax.random.fold_in(key, 1), i), x.shape)
            if cons:
                eps = eps + (xs - jnp.sqrt(a) * src) / jnp.sqrt(1 - a) - out[2 * B:]
            c_skip, c_out = 0.25 / ((10.0 * t) ** 2 + 0.25), 10.0 * t / np.sqrt((10.0 * t) ** 2 + 0.25)
            den = c_out * (x - jnp.sqrt(1 - a) * eps) / jnp.sqrt(a) + c_skip * x
            dens.append(den)
            if i + 1 < len(table):
                a_prev = s.alphas_cumprod[table[i + 1]]
                x = jnp.sqrt(a_prev) * den + jnp.sqrt(1 - a_prev) * noise
                xs = jnp.sqrt(a_prev) * src + jnp.sqrt(1 - a_prev) * noise if cons else None
        return dens

    def total(params):
        model = g.model(frozen[0], params)
        states = [model.init_state(rows * B, (8, 8)) for _ in table]
        clip_losses, prev = [], None  # steady: the previous frame's (denoised latents, source latent)
        for k in range(N // L):
            states = jax.lax.stop_gradient(states) if k else states
            prev = jax.lax.stop_gradient(prev) if k else None
            frame_losses = []
            for j in range(L):
                z0, src = latent(edited[:, k * L + j]), latent(video[:, k * L + j])

                def with_memory(i, rows_in, t, st=states):  # st: this clip's states, updated in place
                    out, st[i] = model(rows_in, jnp.full((rows * B,), t), ctx, st[i])
                    return out

                dens = stream_plainly(with_memory, src)
                if not steady:
                    frame_losses.append(jnp.mean(jnp.stack([jnp.mean((d - z0) ** 2) for d in dens])))
                    continue
                anchor = stream_plainly(lambda i, rows_in, t: base(rows_in, jnp.full((rows * B,), t), ctx), src)
                errs = [cfg.anchor_weight * jnp.mean((d - jax.lax.stop_gradient(a)) ** 2)
                        for d, a in zip(dens, anchor, strict=True)]
                if prev is not None:
                    errs = [e + jnp.mean(((d - pd) - (src - prev[1])) ** 2)
                            for e, d, pd in zip(errs, dens, prev[0], strict=True)]
                prev = (dens, src)
                frame_losses.append(jnp.mean(jnp.stack(errs)))
            clip_losses.append(jnp.mean(jnp.stack(frame_losses)))
        return jnp.mean(jnp.stack(clip_losses))

    return jax.value_and_grad(total)(trainable)


@pytest.mark.slow
@pytest.mark.parametrize("inversion,loss", [("lcm", "edit"), ("consistency", "edit"), ("lcm", "steady"),
                                            ("consistency", "steady")])
def test_unrolled_stream_objective_equals_plain_loops(trained, micro, inversion, loss):
    """``lcm_stream`` (the stream's own inversion — or its inversion-free consistency mode — and
    LCM steps under CFG, trained end to end on edit pairs) against the plain transcription above,
    with a guidance other than 1 so that lambda is seen to enter; ``steady``: the frame-to-frame
    change against the source's (across the clip boundary too) plus the anchor to the stream
    without temporal modules, at a weight other than the default."""
    tr = make_trainer(micro, noising="lcm_stream", lcm_steps=2, loss_space="x0", caption_dropout=0.0, guidance=1.5,
                      inversion=inversion, stream_loss=loss, anchor_weight=0.3)
    params, data, key = trained["init"], batch(tr, n=4), jax.random.key(3)
    params = jax.tree.map(lambda a: a + 0.05 * np.random.default_rng(0).standard_normal(a.shape, np.float32), params)
    ours = loss_and_grads(tr.task, params, tr.frozen, data, key)
    ref_loss, ref_grads = jax.jit(lambda p, f, d, k: stream_reference(p, f, d, k, tr))(params, tr.frozen, data, key)
    np.testing.assert_allclose(float(ours[0]), float(ref_loss), rtol=1e-5)
    # grads: float32 noise scales with the leaf (lcm-steady, leaves up to 0.5: one element off by
    # 1.8e-6 at 4.6e-4), so the absolute floor is 1e-5 of the leaf's largest value (>= 1e-6)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ref_grads), strict=True):
        b = np.asarray(b)
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-3, atol=max(1e-6, 1e-5 * float(np.abs(b).max())))


def test_remat_changes_memory_not_results(trained, micro):
    tr = trained["trainer"]
    data, key, frozen = batch(tr), jax.random.key(1), tr.frozen
    params = jax.tree.map(lambda a: a + 0.05, trained["init"])

    def run(remat):
        t = make_trainer(micro, remat=remat) if remat != "none" else tr
        return loss_and_grads(t.task, params, frozen, data, key)  # "none": the scan test's program

    base, blocked = run("none"), run("block")
    np.testing.assert_allclose(float(base[0]), float(blocked[0]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(base[1]), jax.tree.leaves(blocked[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)


@pytest.mark.slow
def test_remat_per_frame(trained, micro):
    tr = trained["trainer"]
    data, key, frozen = batch(tr), jax.random.key(1), tr.frozen
    params = jax.tree.map(lambda a: a + 0.05, trained["init"])
    outs = [loss_and_grads(t.task, params, frozen, data, key) for t in (tr, make_trainer(micro, remat="frame"))]
    for a, b in zip(jax.tree.leaves(outs[0]), jax.tree.leaves(outs[1]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-7)


def _train_args(workdir, steps, *extra):
    return ["train", "--config", str(ROOT / "configs/svdiff_train.py:tiny"),
            "--workdir", str(workdir), f"--config.steps={steps}",
            "--config.data.size=(16, 16)", "--config.data.frames=4", "--config.objective.clip_frames=2",
            "--config.temporal.memory_hw=(2, 2)", "--config.checkpoint_every=3", "--config.log_every=1",
            "--config.sample.every=0", "--config.optim.learning_rate=0.01", *extra]


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())]


def test_kill_and_resume_is_bit_identical_and_the_memory_loads_into_stream(tmp_path, micro):
    """6 steps straight vs 3, then 3 more in a new process: the same losses bit for bit (state,
    RNG and data position all come back); the exported memory changes what ``jaxvid stream``
    writes. Only the resume runs in a subprocess (a process start costs ~10 s of the suite)."""
    import jaxvid
    from jaxvid.cli import main

    model = jaxvid.save_pipeline(micro, tmp_path / "micro")
    extra = f"--config.model.path={model}"
    assert main(_train_args(tmp_path / "straight", 6, extra)) == 0
    assert main(_train_args(tmp_path / "resumed", 3, extra)) == 0
    r = subprocess.run([sys.executable, "-m", "jaxvid.cli", *_train_args(tmp_path / "resumed", 6, extra)],
                       capture_output=True, timeout=900)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "resumed")
    assert len(_losses(tmp_path / "resumed")) == 6
    assert (tmp_path / "resumed" / "tensorboard").is_dir()
    ckpts = sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir() if p.name.isdigit())
    assert ckpts == ["3", "6"]

    from jaxvid.data.video import read_video, write_video

    src = write_video(tmp_path / "in.mp4", np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8))
    memory = tmp_path / "resumed" / "export"
    outs = []
    for flags in ([], ["--memory", str(memory)]):
        out = tmp_path / f"s{len(flags)}.mp4"
        assert main(["stream", str(src), "--model", str(model), "--prompt", "a red circle", "--size", "16",
                     "--steps", "2", *flags, "-o", str(out)]) == 0
        outs.append(read_video(out, height=16, width=16).astype(int))
    assert outs[0].shape == outs[1].shape and np.abs(outs[0] - outs[1]).max() > 0


def test_nan_stops_the_run_naming_the_step_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, micro):
    from configs.svdiff_train import get_config as train_config
    from jaxvid.training import loop

    cfg = train_config("tiny")
    cfg.model.preset = "micro"
    cfg.data.size, cfg.data.frames, cfg.objective.clip_frames = (16, 16), 4, 2
    cfg.temporal.memory_hw = (2, 2)
    cfg.steps, cfg.checkpoint_every, cfg.log_every, cfg.sample.every = 5, 2, 1, 0
    cfg.optim.learning_rate = OPTIM.learning_rate  # the shared program (see OPTIM)
    real_step = Trainer.step

    def poisoned(self, state, data):
        if int(state.step) == 2:  # a NaN appears in the parameters before the third step
            state = state.replace(params=jax.tree.map(lambda a: a * jnp.nan, state.params))
        return real_step(self, state, data)

    monkeypatch.setattr(Trainer, "step", poisoned)
    with pytest.raises(loop.NonFiniteError, match=r"step 3: non-finite .* checkpoint \(step 2\) is intact"):
        loop.train(cfg, tmp_path, progress=False)
    from jaxvid.training.checkpoints import Checkpoints

    ck = Checkpoints(tmp_path / "checkpoints")
    assert ck.all_steps() == [2]
    assert ck.saved_config(2)["steps"] == 5
    ck.close()
    assert [r[0] for r in _losses(tmp_path)] == [1, 2]


def test_bad_training_configs_fail_before_any_work(tmp_path):
    from configs.svdiff_train import get_config as train_config
    from jaxvid.training import loop

    for key, value, message in (("objective.clip_frames", 5, "multiple of"), ("batch_size", 0, ">= 1"),
                                ("objective.remat", "everything", "remat must be"),
                                ("objective.noising", "uniform", "noising must be"),
                                ("objective.lcm_steps", 0, "lcm_steps"),
                                ("objective.inversion_share", 1.5, "inversion_share"),
                                ("objective.loss_space", "v", "loss_space must be"),
                                ("objective.guidance", -1.0, "guidance"),
                                ("objective.inversion", "noise", "inversion must be"),
                                ("objective.inversion", "consistency", "modes of noising='lcm_stream' only"),
                                ("objective.stream_loss", "flow", "stream_loss must be"),
                                ("objective.anchor_weight", -0.5, "anchor_weight"),
                                ("objective.noising", "lcm_stream", "loss_space='x0' and caption_dropout=0"),
                                ("objective.noising", "lcm_edit", "needs data.source='toyworld_edits'"),
                                ("data.source", "toyworld_edits", "needs data.source='toyworld_edits'"),
                                ("optim.schedule", "exp", "schedule must be"),
                                ("temporal.memory_init", "random", "memory_init")):
        cfg = train_config("tiny")
        node, leaf = (cfg[key.split(".")[0]], key.split(".")[1]) if "." in key else (cfg, key)
        node[leaf] = value
        with pytest.raises(ValueError, match=message):
            loop.train(cfg, tmp_path / "x", progress=False)
        assert not (tmp_path / "x").exists()


def test_config_xla_flags_reach_xla_flags_before_training_and_the_user_wins(monkeypatch, tmp_path):
    """``xla_flags`` of a run config are added to ``XLA_FLAGS`` by ``jaxvid train`` before the
    run starts (XLA reads them once, when JAX starts its backend); a flag the user set wins."""
    from jaxvid.cli import main
    from jaxvid.training import loop

    seen = []
    monkeypatch.setattr(loop, "train", lambda config, workdir: seen.append(os.environ["XLA_FLAGS"]) or workdir)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true --xla_dump_to=/dev/null")
    assert main(["train", "--config", str(ROOT / "configs/toyworld.py:vae"), "--workdir", str(tmp_path),
                 "--config.xla_flags=--xla_cpu_multi_thread_eigen=false --xla_cpu_enable_fast_math=false"]) == 0
    assert seen == ["--xla_cpu_multi_thread_eigen=true --xla_dump_to=/dev/null --xla_cpu_enable_fast_math=false"]
    monkeypatch.delenv("XLA_FLAGS")
    from configs.toyworld import get_config as toyworld_config

    loop.apply_xla_flags(toyworld_config("t2i"))
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"
