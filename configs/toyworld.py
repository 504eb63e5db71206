"""The toy-world model: what each training stage builds, where its output goes, and how long it
trains. Stages, in order (each its own resumable ``jaxvid train`` run; ``make toyworld`` runs
all of them and assembles the built-in model):

    jaxvid train --config configs/toyworld.py:vae    --workdir runs/toyworld/vae
    jaxvid train --config configs/toyworld.py:t2i    --workdir runs/toyworld/t2i
    jaxvid train --config configs/toyworld.py:lcm    --workdir runs/toyworld/lcm
    jaxvid train --config configs/toyworld.py:svdiff --workdir runs/toyworld/svdiff    # the memory
    jaxvid train --config configs/toyworld.py:svdiff,memory,objective=paper ...   # with the paper's objective
    jaxvid train --config configs/toyworld.py:svdiff,window --workdir runs/toyworld/window   # baselines
    jaxvid train --config configs/toyworld.py:svdiff,memory,hw=16 ...      # ablations: hw=, init=, frames=

The model: 64x64 RGB frames; an AutoencoderKL with 3 levels (4x downsampling, 16x16x4 latents);
a UNet2DConditionModel with levels (32, 64, 64), attention at 16x16 and 8x8 (7 transformer
blocks); a 2-layer, 64-wide CLIP text encoder over the real CLIP BPE (49,408 tokens). Everything
is the diffusers/transformers architecture, so the folder loads in PyTorch too.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from jaxvid.data.pipeline import DataConfig
from jaxvid.models.temporal import TemporalConfig
from jaxvid.training.optim import OptimConfig
from jaxvid.training.tasks.svdiff import ObjectiveConfig

RUNS = "runs/toyworld"  # stage workdirs (each stage reads the previous stages' exports)
VAE = dict(
    block_out_channels=(16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, layers_per_block=1, latent_channels=4, norm_num_groups=8,
    sample_size=64, scaling_factor=1.0,
)
UNET = dict(
    sample_size=16, block_out_channels=(32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
    attention_head_dim=4, cross_attention_dim=64, norm_num_groups=16,
)
TEXT = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, vocab_size=49408, projection_dim=64)
PROMPTS = ("a red circle moving on a blue background", "a green square moving on a gray background",
           "a yellow star moving on a striped black background", "a blue triangle and a pink circle moving on a white background")


def _d(obj) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dataclasses.asdict(obj))


def _common(steps: int, batch: int, frames: int, lr: float) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.data = _d(DataConfig(source="toyworld", frames=frames, size=(64, 64)))
    c.optim = _d(OptimConfig(learning_rate=lr, warmup_steps=100, schedule="cosine", end_fraction=0.1,
                             weight_decay=0.0))
    c.batch_size, c.steps, c.seed = batch, steps, 0
    c.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.log_every, c.checkpoint_every, c.keep_checkpoints = 25, 250, 2
    c.sample = ml_collections.ConfigDict(dict(every=500, frames=32, prompts=PROMPTS, prompt="", steps=3))
    # single-threaded Eigen kernels: the toy models' small convolutions lose more to thread hand-offs than
    # they gain (2-core steps: t2i -16 %, lcm -6 %, window -6 %, vae/svdiff unchanged; docs/toyworld.md)
    c.xla_flags = "--xla_cpu_multi_thread_eigen=false"
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    stage, *mods = (arg or "t2i").split(",")
    if stage == "vae":
        c = _common(steps=1200, batch=8, frames=1, lr=1e-3)
        c.task, c.vae, c.kl_weight = "vae", ml_collections.ConfigDict(VAE), 1e-6
    elif stage == "t2i":
        c = _common(steps=4500, batch=16, frames=1, lr=5e-4)
        c.task = "t2i"
        c.unet, c.text_encoder = ml_collections.ConfigDict(UNET), ml_collections.ConfigDict(TEXT)
        c.vae_path, c.caption_dropout, c.prediction_type = f"{RUNS}/vae/export", 0.1, "epsilon"
    elif stage == "lcm":
        c = _common(steps=800, batch=16, frames=1, lr=5e-4)
        c.task = "lcm"
        c.model = ml_collections.ConfigDict(dict(path=f"{RUNS}/t2i/export", preset="", dtype="float32",
                                                 attention="auto", lora=None))
        c.lora = ml_collections.ConfigDict(dict(rank=8, guidance_range=(1.5, 4.0), solver_steps=50, huber_c=0.001))
    elif stage == "svdiff":
        kind = mods[0] if mods and "=" not in mods[0] else "memory"
        opts = dict(m.split("=", 1) for m in mods if "=" in m)  # ablations: hw=N, init=NAME, frames=N
        # objective=stream: through SVDiff's stream with the temporal-consistency loss (the shipped
        # memory's default); objective=paper: the paper's denoising objective (the baselines' and
        # ablations' default; the memory shipped before: svdiff,memory,objective=paper)
        objective = opts.pop("objective", "stream" if kind == "memory" and not opts else "paper")
        if objective not in ("stream", "paper"):
            raise ValueError(f"objective must be 'stream' or 'paper', got {objective!r}")
        stream = objective == "stream"
        steps = 60 if opts else 200 if stream else 300 if kind == "memory" else 150  # ablations: short, all alike
        c = _common(steps=steps, batch=2, frames=int(opts.get("frames", 8 if stream else 16)),
                    lr=5e-3 if stream else 1e-3)
        c.task = "svdiff"
        if opts:
            c.optim.warmup_steps = 12  # a fifth of the short ablation runs
        c.model = ml_collections.ConfigDict(dict(path=f"{RUNS}/t2i/export", preset="", dtype="float32",
                                                 attention="auto", lora=f"{RUNS}/lcm/export"))
        hw = int(opts.get("hw", 8))
        c.temporal = _d(TemporalConfig(kind=kind, memory_hw=(hw, hw), memory_init=opts.get("init", "positional")))
        if stream:
            # SVDiff's stream (LCM inversion, 2 steps, lambda 1) unrolled over toy edit pairs with the
            # temporal-consistency loss: frame-to-frame change of every step's output must follow the
            # source's, anchored to the memory-free stream. The paper's denoising objective made the
            # stream no steadier (docs/toyworld.md)
            c.data.source = "toyworld_edits"
            c.objective = _d(ObjectiveConfig(clip_frames=min(4, c.data.frames), caption_dropout=0.0, noising="lcm_stream",
                                             lcm_steps=2, loss_space="x0", stream_loss="steady", anchor_weight=0.5))
        else:
            c.objective = _d(ObjectiveConfig(clip_frames=min(4, c.data.frames), caption_dropout=0.1))
        c.sample.every = 300
    else:
        raise ValueError(f"unknown toy-world stage {stage!r}: vae, t2i, lcm, svdiff[,<temporal kind>][,<key>=<value>]")
    c.stage = stage
    return c
