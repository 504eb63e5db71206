"""``train(config, workdir)``: the SVDiff training run end to end.

Resumable: the latest checkpoint in ``workdir/checkpoints`` (train state, data position,
config) is restored, and a killed run loses at most the steps since its last checkpoint
(Ctrl-C saves one first). A non-finite loss or gradient stops the run with the step named; the
state of that step is not applied and the last checkpoint stays intact. Outputs in ``workdir``:
``config.json``, ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``, ``temporal/`` (the
trained modules for ``jaxvid stream --memory``, refreshed at every checkpoint) and
``samples/`` (PNG strips of a streamed edit of a held-out clip).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvid.data.pipeline import DataConfig, VideoPipeline
from jaxvid.models.temporal import TemporalConfig, TemporalUNet
from jaxvid.sharding import initialize_distributed, make_mesh, placer
from jaxvid.training.checkpoints import Checkpoints
from jaxvid.training.logger import MetricLogger
from jaxvid.training.objective import ObjectiveConfig
from jaxvid.training.optim import OptimConfig
from jaxvid.training.trainer import Trainer, TrainState

# keys that may differ between a run and its resumption (everything else must match)
RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "sample", "data.workers")


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient; the run stopped."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The typed, validated parts of a training config."""

    temporal: TemporalConfig
    data: DataConfig
    objective: ObjectiveConfig
    optim: OptimConfig

    @classmethod
    def from_config(cls, c: ml_collections.ConfigDict) -> "RunConfig":
        d = c.to_dict()
        d["temporal"]["memory_hw"] = tuple(d["temporal"]["memory_hw"])
        d["data"]["size"] = tuple(d["data"]["size"])
        run = cls(TemporalConfig(**d["temporal"]), DataConfig(**d["data"]), ObjectiveConfig(**d["objective"]),
                  OptimConfig(**d["optim"]))
        if c.steps < 1 or c.batch_size < 1 or c.log_every < 1 or c.checkpoint_every < 1 or c.sample.every < 0:
            raise ValueError("steps, batch_size, log_every and checkpoint_every must be >= 1, sample.every >= 0")
        if run.data.frames % run.objective.clip_frames:
            raise ValueError(f"data.frames={run.data.frames} must be a multiple of "
                             f"objective.clip_frames={run.objective.clip_frames}")
        return run


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def _check_resumable(saved: dict, config: ml_collections.ConfigDict) -> None:
    now, before = _flat(json.loads(config.to_json())), _flat(saved)
    changed = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k)
                     and not any(k == p or k.startswith(p + ".") for p in RESUMABLE_CHANGES))
    if changed:
        raise ValueError(f"the workdir holds a run with a different config ({', '.join(changed)}); "
                         "resume it unchanged or use a new --workdir")


def load_models(model: ml_collections.ConfigDict, mesh):
    """The frozen bundle: a diffusers folder (weights placed straight into their shards) or the
    built-in model."""
    from configs.models import get_config as model_preset
    from jaxvid.pipelines.bundle import load_pipeline
    from jaxvid.pipelines.default import random_bundle

    dt = jnp.dtype(model.dtype)
    if model.path:
        return load_pipeline(model.path, dtype=dt, param_dtype=dt, attention_kernel=model.attention,
                             place=placer(mesh))
    preset = model_preset(model.preset)
    preset.dtype = preset.param_dtype = model.dtype
    preset.attention_kernel = model.attention
    return random_bundle(preset)


def export_temporal(trainer: Trainer, state: TrainState, path: Path) -> Path:
    """The trained temporal modules as a folder ``jaxvid stream --memory`` loads."""
    from jax.experimental import multihost_utils

    from jaxvid.weights.temporal import save_temporal

    params = state.params if jax.process_count() == 1 else multihost_utils.process_allgather(state.params)
    model = trainer.graphs.model(trainer.frozen[0], jax.device_get(params))
    if jax.process_index() == 0:
        save_temporal(model, path)
    return path


def sample_clip(bundle, model: TemporalUNet, config: ml_collections.ConfigDict, run: RunConfig):
    """A streamed edit of a held-out toy-world clip (longer than the training videos): the
    PNG strip (source over edited) and the temporal state's RMS per site after the stream."""
    from jaxvid.data.toyworld import ToyWorld
    from jaxvid.pipelines.svdiff import StreamConfig, StreamEditor
    from jaxvid.training.objective import state_rms

    h, w = run.data.size
    clip = ToyWorld(seed=run.data.seed + 10_007, frames=config.sample.frames, size=h)[0]
    prompt = config.sample.prompt or clip["caption"]
    editor = StreamEditor(bundle, model, prompt, StreamConfig(steps=config.sample.steps, inversion="noise"),
                          height=h, width=w)
    state, outs = editor.init_state(), []
    for frame in clip["video"]:
        out, _, state = editor.step(state, frame)
        outs.append(np.asarray(out))
    idx = np.linspace(0, len(outs) - 1, 8).round().astype(int)
    strip = np.concatenate([np.concatenate(list(clip["video"][idx]), 1), np.concatenate([outs[i] for i in idx], 1)])
    rms = np.asarray(state_rms(tuple(jax.tree.map(lambda a: a[:, 0], s) for s in state.temporal)))
    return strip, rms


def train(config: ml_collections.ConfigDict, workdir: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) the training described by ``config`` in ``workdir``; returns the
    exported temporal-module folder."""
    from PIL import Image
    from tqdm import tqdm

    run = RunConfig.from_config(config)  # every bad setting fails here, before any work
    initialize_distributed()
    mesh = make_mesh(config.mesh.to_dict())
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.batch_size % split or config.batch_size % jax.process_count():
        raise ValueError(f"batch_size={config.batch_size} must divide over the {split} data-parallel devices "
                         f"and {jax.process_count()} processes")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints)
    start = ckpts.latest_step()
    if start is not None:
        _check_resumable(ckpts.saved_config(start), config)

    bundle = load_models(config.model, mesh)
    trainer = Trainer(bundle.unet, bundle.vae, bundle.text_encoder, bundle.tokenizer, bundle.schedule,
                      temporal=run.temporal, objective=run.objective, optim=run.optim, total_steps=config.steps,
                      mesh=mesh)
    pipeline = VideoPipeline(run.data, bundle.tokenizer, batch_size=config.batch_size // jax.process_count(),
                             max_length=bundle.text_encoder.config.max_position_embeddings,
                             shard_index=jax.process_index(), shard_count=jax.process_count())
    data = pipeline.iterator()
    config_json = json.loads(config.to_json())
    if start is None:
        state, start = trainer.init(config.seed), 0
        (workdir / "config.json").write_text(json.dumps(config_json, indent=2))
    else:
        state, _ = ckpts.restore(start, trainer.abstract_state(), data)
    logger = MetricLogger(workdir, enabled=jax.process_index() == 0)
    bar = tqdm(total=config.steps, initial=start, unit="step", desc="training", disable=not progress)
    saved, done, t0 = start, start, time.time()

    def save() -> None:
        nonlocal saved
        if done > saved or ckpts.latest_step() is None:
            ckpts.save(done, state, data, config_json)
            export_temporal(trainer, state, workdir / "temporal")
            saved = done

    try:
        for step in range(start, config.steps):
            state, metrics = trainer.step(state, next(data))
            metrics = jax.device_get(metrics)
            if not bool(metrics["finite"]):
                raise NonFiniteError(
                    f"step {step + 1}: non-finite loss ({float(metrics['loss'])}) or gradient norm "
                    f"({float(metrics['grad_norm'])}); training stopped without applying it. The last checkpoint "
                    f"(step {ckpts.latest_step()}) is intact; lower optim.learning_rate or check the data")
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0 or done == config.steps:
                rate = (done - start) / (time.time() - t0)
                row = logger.write(done, {**{k: v for k, v in metrics.items() if k != "finite"},
                                          "steps_per_s": rate, "frames_per_s": rate * config.batch_size * run.data.frames,
                                          "skipped_videos": pipeline.skipped})
                bar.set_postfix(loss=f"{row['loss']:.4f}", grad=f"{row['grad_norm']:.3f}")
            if done % config.checkpoint_every == 0 or done == config.steps:
                save()
            if config.sample.every and done % config.sample.every == 0 and jax.process_index() == 0:
                model = trainer.graphs.model(trainer.frozen[0], jax.device_get(state.params))
                strip, rms = sample_clip(bundle, model, config, run)
                (workdir / "samples").mkdir(exist_ok=True)
                Image.fromarray(strip).save(workdir / "samples" / f"step_{done:07d}.png")
                logger.image(done, "sample", strip)
                logger.write(done, {"sample_state_rms": rms})
    except KeyboardInterrupt:
        bar.write(f"interrupted at step {done}: saving a checkpoint")
        save()
        raise
    finally:
        bar.close()
        logger.close()
        ckpts.close()
        if hasattr(data, "close"):
            data.close()
    return workdir / "temporal"
