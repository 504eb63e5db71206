"""Training tasks of ``jaxvid train``, by ``config.task`` (a registry: the CLI and configs derive
their choices from it): SVDiff's temporal modules, and the toy-world model's autoencoder,
text-to-image model and LCM distillation. Each builder turns a run config into a task (loading
what it starts from) and fails on bad settings before any work."""

from __future__ import annotations

from typing import Callable

import ml_collections

from jaxvid.training.tasks.base import Task


def _svdiff(c: ml_collections.ConfigDict, mesh) -> Task:
    from jaxvid.models.temporal import TemporalConfig
    from jaxvid.training.models import load_models
    from jaxvid.training.tasks.svdiff import EDIT_NOISING, ObjectiveConfig, SVDiffTask

    d = c.to_dict()
    temporal = TemporalConfig(**{**d["temporal"], "memory_hw": tuple(d["temporal"]["memory_hw"])})
    objective = ObjectiveConfig(**d["objective"])
    if (objective.noising in EDIT_NOISING) != (c.data.source == "toyworld_edits"):
        raise ValueError(f"objective.noising in {EDIT_NOISING} trains on edit pairs and needs data.source='toyworld_edits' "
                         f"(and that source needs it); got {objective.noising!r} with {c.data.source!r}")
    if c.data.frames % objective.clip_frames:
        raise ValueError(f"data.frames={c.data.frames} must be a multiple of objective.clip_frames={objective.clip_frames}")
    return SVDiffTask(load_models(c.model, mesh), temporal=temporal, objective=objective,
                      sample_prompt=c.sample.prompt, sample_steps=c.sample.steps, seed=c.seed)


def _vae(c: ml_collections.ConfigDict, mesh) -> Task:
    from jaxvid.models.vae import VAEConfig
    from jaxvid.training.tasks.vae import VAETask

    return VAETask(VAEConfig.from_dict(c.vae.to_dict()), kl_weight=c.kl_weight, seed=c.seed)


def _t2i(c: ml_collections.ConfigDict, mesh) -> Task:
    from jaxvid.models.clip import CLIPTextConfig
    from jaxvid.models.unet import UNetConfig
    from jaxvid.schedulers.schedule import make_schedule
    from jaxvid.text import default_tokenizer
    from jaxvid.training.tasks.t2i import TextToImageTask
    from jaxvid.weights.loaders import load_vae

    return TextToImageTask(UNetConfig.from_dict(c.unet.to_dict()), CLIPTextConfig.from_dict(c.text_encoder.to_dict()),
                           vae=load_vae(c.vae_path), tokenizer=default_tokenizer(),
                           schedule=make_schedule(set_alpha_to_one=False, prediction_type=c.prediction_type),
                           caption_dropout=c.caption_dropout, sample_prompts=tuple(c.sample.prompts), seed=c.seed)


def _lcm(c: ml_collections.ConfigDict, mesh) -> Task:
    from jaxvid.training.models import load_models
    from jaxvid.training.tasks.lcm import LCMTask

    return LCMTask(load_models(c.model, mesh), rank=c.lora.rank, guidance_range=tuple(c.lora.guidance_range),
                   solver_steps=c.lora.solver_steps, huber_c=c.lora.huber_c, sample_prompts=tuple(c.sample.prompts),
                   seed=c.seed)


TASKS: dict[str, Callable[[ml_collections.ConfigDict, object], Task]] = {
    "svdiff": _svdiff, "vae": _vae, "t2i": _t2i, "lcm": _lcm,
}


def build_task(config: ml_collections.ConfigDict, mesh) -> Task:
    if config.task not in TASKS:
        raise ValueError(f"unknown task {config.task!r}; known: {sorted(TASKS)}")
    return TASKS[config.task](config, mesh)


__all__ = ["TASKS", "Task", "build_task"]
