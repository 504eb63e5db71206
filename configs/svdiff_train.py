"""SVDiff memory training (paper §4.3 / §5.1): the temporal modules learn on long videos while the
base model stays frozen.

    jaxvid train --config configs/svdiff_train.py:tiny --workdir runs/tiny        # CPU, minutes
    jaxvid train --config configs/svdiff_train.py --workdir runs/svdiff \\
        --config.model.path=./stable-diffusion-v1-5 --config.data.source=folder --config.data.path=./videos

Arguments: none = the paper's setup; ``tiny`` = the built-in tiny model on 64x64 toy-world clips.

Paper setup (what the paper states, and what jaxvid chose where it is silent):

* SD1.5 base UNet, frozen (the paper samples with LCM-LoRA at inference; training uses the base
  model's epsilon objective, so LoRA is not fused for training: ``sample.lora`` names the LoRA the
  periodic sample clips use);
* videos of 64 frames at 512x512, split into clips of 8, memory 8x8 after each of the 16
  transformer blocks (+49.6M parameters), 20k iterations on 8 GPUs (paper: 8 A100s, 8 days);
* not stated by the paper, chosen here: batch 8 (one video per GPU), AdamW lr 1e-4 with 500
  warm-up steps then constant, weight decay 0.01 on kernels, global-norm clipping 1.0, caption
  dropout 0.1, bf16 compute with float32 trainable weights and float32 memory state, remat of
  each frame's UNet call.

Cost per step, computed (not guessed) by tracing the full config's step on an abstract model:
``python experiments/bench_train.py --analyze --preset sd15 --size 512 --frames 64 --clip 8
--batch 1 --memory 8 --dtype bfloat16 --remat frame``. One 64-frame video: 285 TFLOP (4.45 TFLOP
per frame: VAE encode, UNet + memory forward, the backward to the memory, and the per-frame
rematerialised forward; 219 TFLOP without remat). On one H200 (989 dense bf16 TFLOP/s) at the
8.8-28% MFU jaxvid's SD1.5 UNet forward reached there (batch 1 and 8, docs/benchmarks.md) that is
1.0-3.3 s per video, so 20k steps of batch 8 on 8 such GPUs: 6-18 h. With ``mesh.data=8`` each
GPU holds one video: the per-GPU step equals the batch-1 step plus one all-reduce of the 50M
trainable parameters' gradients. The step itself and its memory (``--analyze --compile`` gives
XLA's memory analysis) have not yet been measured on a GPU.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxvid.data.pipeline import DataConfig
from jaxvid.models.temporal import TemporalConfig
from jaxvid.training.tasks.svdiff import ObjectiveConfig
from jaxvid.training.optim import OptimConfig


def _dict(obj) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dataclasses.asdict(obj))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.task = "svdiff"
    c.model = ml_collections.ConfigDict(dict(
        path=None,  # diffusers folder; None: the built-in model (preset below)
        preset="tiny",  # configs/models.py preset of the built-in model when path is None
        dtype="bfloat16",  # compute dtype of the networks (trainable weights are stored in float32)
        attention="auto",
    ))
    c.temporal = _dict(TemporalConfig())
    c.data = _dict(DataConfig(source="folder", path=None, frames=64, size=(512, 512), workers=8))
    c.objective = _dict(ObjectiveConfig(clip_frames=8, caption_dropout=0.1, remat="frame"))
    c.optim = _dict(OptimConfig(learning_rate=1e-4, warmup_steps=500, weight_decay=1e-2, clip_norm=1.0))
    c.batch_size = 8  # global: videos per step, split over the mesh's data x fsdp devices
    c.steps = 20_000
    c.seed = 0
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))  # -1: all remaining devices
    c.log_every = 10
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
    c.sample = ml_collections.ConfigDict(dict(
        every=1000,  # steps between sample clips (0: never)
        prompt="",  # edit prompt of the sample stream ("" = the held-out clip's own caption)
        frames=128,  # longer than the training videos: the memory's RMS over a long stream is logged
        steps=3,  # LCM steps of the sample stream
        lora=None,  # e.g. an LCM-LoRA folder for SD1.5 samples
    ))
    if arg == "tiny":
        c.model.dtype = "float32"
        c.data = _dict(DataConfig(source="toyworld", frames=16, size=(64, 64)))
        c.objective = _dict(ObjectiveConfig(clip_frames=4, caption_dropout=0.1))
        c.optim = _dict(OptimConfig(learning_rate=1e-3, warmup_steps=10))
        c.temporal.memory_hw = (4, 4)
        c.batch_size = 2
        c.steps = 200
        c.log_every = 5
        c.checkpoint_every = 50
        c.sample.update(every=100, frames=32, steps=2)
    elif arg is not None:
        raise ValueError(f"unknown argument {arg!r}: none (paper setup) or 'tiny'")
    return c
