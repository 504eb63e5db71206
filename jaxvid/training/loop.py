"""``train(config, workdir)``: a training run of any task (``config.task``) end to end.

Resumable: the latest checkpoint in ``workdir/checkpoints`` (train state, data position,
config) is restored, and a killed run loses at most the steps since its last checkpoint
(Ctrl-C saves one first). A non-finite loss or gradient stops the run with the step named; the
state of that step is not applied and the last checkpoint stays intact. Outputs in ``workdir``:
``config.json``, ``metrics.jsonl``, ``tensorboard/``, ``checkpoints/``, ``export/`` (the trained
result where its users load it, refreshed at every checkpoint: temporal modules for
``jaxvid stream --memory``, a model folder, an LCM-LoRA...) and ``samples/`` (PNG pictures of
the current model, e.g. a streamed edit of a held-out clip).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax
import ml_collections

from jaxvid.data.pipeline import DataConfig, VideoPipeline
from jaxvid.sharding import initialize_distributed, make_mesh
from jaxvid.training.checkpoints import Checkpoints
from jaxvid.training.logger import MetricLogger
from jaxvid.training.optim import OptimConfig
from jaxvid.training.trainer import Trainer

# keys that may differ between a run and its resumption (everything else must match)
RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "sample", "data.workers",
                     "xla_flags")


class NonFiniteError(RuntimeError):
    """A step produced a non-finite loss or gradient; the run stopped."""


def apply_xla_flags(config: ml_collections.ConfigDict) -> None:
    """Add the run's ``xla_flags`` (compiler settings that change speed, not results: e.g. the toy
    world's single-threaded Eigen kernels) to ``XLA_FLAGS``. XLA reads them once, when JAX starts
    its backend, so entry points call this before any JAX work; a flag the user already set in
    ``XLA_FLAGS`` wins."""
    import os

    mine = (config.get("xla_flags") or "").split()
    user = os.environ.get("XLA_FLAGS", "").split()
    named = {f.split("=", 1)[0] for f in user}
    extra = [f for f in mine if f.split("=", 1)[0] not in named]
    if extra:
        os.environ["XLA_FLAGS"] = " ".join(user + extra)


def _common(c: ml_collections.ConfigDict) -> tuple[DataConfig, OptimConfig]:
    """The typed settings every task shares; bad values raise here, before any work."""
    d = c.to_dict()
    data = DataConfig(**{**d["data"], "size": tuple(d["data"]["size"])})
    optim = OptimConfig(**d["optim"])
    if c.steps < 1 or c.batch_size < 1 or c.log_every < 1 or c.checkpoint_every < 1 or c.sample.every < 0:
        raise ValueError("steps, batch_size, log_every and checkpoint_every must be >= 1, sample.every >= 0")
    return data, optim


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


def train(config: ml_collections.ConfigDict, workdir: str | Path, *, progress: bool = True) -> Path:
    """Run (or resume) the training described by ``config`` in ``workdir``; returns the folder
    of the exported result (``workdir/export``)."""
    from PIL import Image
    from tqdm import tqdm

    from jaxvid.training.tasks import build_task

    data_cfg, optim_cfg = _common(config)  # every bad setting fails before any work
    initialize_distributed()
    mesh = make_mesh(config.mesh.to_dict())
    split = mesh.shape["data"] * mesh.shape["fsdp"]
    if config.batch_size % split or config.batch_size % jax.process_count():
        raise ValueError(f"batch_size={config.batch_size} must divide over the {split} data-parallel devices "
                         f"and {jax.process_count()} processes")
    task = build_task(config, mesh)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ckpts = Checkpoints(workdir / "checkpoints", keep=config.keep_checkpoints)
    start = ckpts.latest_step()
    if start is not None:
        _check_resumable(ckpts.saved_config(start), config)
    trainer = Trainer(task, optim=optim_cfg, total_steps=config.steps, mesh=mesh)
    from jaxvid.text import default_tokenizer

    tokenizer = getattr(getattr(task, "bundle", None), "tokenizer", None) or default_tokenizer()
    pipeline = VideoPipeline(data_cfg, tokenizer, batch_size=config.batch_size // jax.process_count(),
                             shard_index=jax.process_index(), shard_count=jax.process_count())
    data = pipeline.iterator()
    config_json = json.loads(config.to_json())
    if start is None:
        state, start = trainer.init(config.seed), 0
        (workdir / "config.json").write_text(json.dumps(config_json, indent=2))
    else:
        state, _ = ckpts.restore(start, trainer.abstract_state(), data)
    logger = MetricLogger(workdir, enabled=jax.process_index() == 0)
    bar = tqdm(total=config.steps, initial=start, unit="step", desc=f"training {task.name}", disable=not progress)
    saved, done, t0 = start, start, time.time()
    frames_per_video = data_cfg.frames

    def save() -> None:
        nonlocal saved
        if done > saved or ckpts.latest_step() is None:
            ckpts.save(done, state, data, config_json)
            params = trainer.host_params(state)
            if jax.process_index() == 0:
                task.export(params, workdir / "export")
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
                                          "steps_per_s": rate, "frames_per_s": rate * config.batch_size * frames_per_video,
                                          "skipped_videos": pipeline.skipped})
                bar.set_postfix(loss=f"{row['loss']:.4f}", grad=f"{row['grad_norm']:.3f}")
            if done % config.checkpoint_every == 0 or done == config.steps:
                save()
            if config.sample.every and done % config.sample.every == 0 and jax.process_index() == 0:
                picture, sample_metrics = task.sample(trainer.host_params(state), config.sample.frames)
                (workdir / "samples").mkdir(exist_ok=True)
                Image.fromarray(picture).save(workdir / "samples" / f"step_{done:07d}.png")
                logger.image(done, "sample", picture)
                logger.write(done, sample_metrics)
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
    return workdir / "export"
