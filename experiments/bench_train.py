"""SVDiff training-step throughput: jaxvid's sharded jitted step vs a PyTorch step of the same
module (the same diffusers UNet and VAE weights, SVDiff's memory attention after every
transformer block written with forward hooks), same run, same machine.

    python experiments/bench_train.py                        # tiny model, 16-frame videos, CPU
    python experiments/bench_train.py --preset sd15 --size 512 --frames 64 --clip 8 --batch 1 \\
        --dtype bfloat16 --remat frame                       # the full config's step (a GPU)

Both sides do, per step: VAE-encode every frame (frozen), one timestep per video and noise per
frame, clip by clip over the frames the memory carried across frames and clips (stop-gradient at
clip boundaries), backward per clip, one Adam step on the memory parameters. The PyTorch side
takes the text embeddings as given (computed once outside the timing); jaxvid encodes the
captions inside its step (a negligible cost: one text-encoder call per video). Reports steps/s,
frames/s, peak memory (XLA's memory analysis for jaxvid; the process's peak RSS on CPU / CUDA's
peak for PyTorch) and the step's matmul/conv FLOPs (jaxvid/flops.py: every scanned frame counted).
``--analyze`` only traces an abstract model: the full config's FLOPs on any machine. Writes
outputs/bench/bench_train_<preset>_<backend>.json (``--update-results``: experiments/results/).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.models import get_config  # noqa: E402
from experiments.common import add_output_args, machine, torch_unet_pair, torch_vae_pair, write_results  # noqa: E402


def jax_side(args, ref_unet_cfg):
    import jax.numpy as jnp

    from jaxvid.models.build import random_model
    from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
    from jaxvid.models.temporal import TemporalConfig
    from jaxvid.pipelines.bundle import ModelBundle
    from jaxvid.schedulers.schedule import make_schedule
    from jaxvid.sharding import make_mesh
    from jaxvid.text import default_tokenizer
    from jaxvid.training.optim import OptimConfig
    from jaxvid.training.tasks.svdiff import ObjectiveConfig, SVDiffTask
    from jaxvid.training.trainer import Trainer

    mc = get_config(args.preset)
    _, unet = torch_unet_pair(ref_unet_cfg, args.dtype, "cpu")
    _, vae = torch_vae_pair(dict(mc.vae), args.dtype, "cpu")
    dt = jnp.dtype(args.dtype)
    text = random_model(lambda r: CLIPTextModel(CLIPTextConfig.from_dict(dict(mc.text_encoder)), rngs=r,
                                                dtype=dt, param_dtype=dt))
    bundle = ModelBundle(unet=unet, vae=vae, text_encoder=text, tokenizer=default_tokenizer(),
                         schedule=make_schedule())
    task = SVDiffTask(bundle, temporal=TemporalConfig(memory_hw=(args.memory, args.memory)),
                      objective=ObjectiveConfig(clip_frames=args.clip, remat=args.remat))
    tr = Trainer(task, optim=OptimConfig(), total_steps=1000, mesh=make_mesh({"data": -1}))
    rng = np.random.default_rng(0)
    batch = {"video": rng.integers(0, 255, (args.batch, args.frames, args.size, args.size, 3), dtype=np.uint8),
             "ids": np.tile(np.asarray(task.uncond_ids), (args.batch, 1))}
    state = tr.init(0)
    gb = tr.global_batch(batch)
    t0 = time.perf_counter()
    lowered = tr._step.lower(state, tr.frozen, gb)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    times = []
    for _ in range(args.warmup + args.iters):
        t = time.perf_counter()
        state, m = compiled(state, tr.frozen, gb)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    step = float(np.median(times[args.warmup:]))
    return {"step_s": step, "compile_s": compile_s, "flops": step_flops(tr, args),
            "temp_bytes": getattr(mem, "temp_size_in_bytes", None), "argument_bytes": getattr(mem, "argument_size_in_bytes", None),
            "loss": float(m["loss"])}


def step_flops(tr, args) -> float:
    """Matmul/conv FLOPs of one train step with every scanned frame counted (XLA's own cost
    analysis counts a scan body once: see jaxvid/flops.py)."""
    from jaxvid.flops import count_flops

    return count_flops(tr.step_fn, *tr.abstract_inputs(args.batch, args.frames, args.size, args.size))


def analyze(args) -> dict:
    """The step of an abstract model (no weights anywhere): FLOPs per step from the traced
    program, and with ``--compile`` the compiled step's memory analysis. This is how the full
    config's cost is computed on a machine that cannot run it."""
    import jax.numpy as jnp

    from jaxvid.models.build import abstract_model
    from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
    from jaxvid.models.temporal import TemporalConfig
    from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
    from jaxvid.models.vae import AutoencoderKL, VAEConfig
    from jaxvid.pipelines.bundle import ModelBundle
    from jaxvid.schedulers.schedule import make_schedule
    from jaxvid.sharding import make_mesh
    from jaxvid.text import default_tokenizer
    from jaxvid.training.optim import OptimConfig
    from jaxvid.training.tasks.svdiff import ObjectiveConfig, SVDiffTask
    from jaxvid.training.trainer import Trainer

    mc = get_config(args.preset)
    kw = dict(dtype=jnp.dtype(args.dtype), param_dtype=jnp.dtype(args.dtype))
    bundle = ModelBundle(
        unet=abstract_model(lambda r: UNet2DConditionModel(UNetConfig.from_dict(dict(mc.unet)), rngs=r, **kw)),
        vae=abstract_model(lambda r: AutoencoderKL(VAEConfig.from_dict(dict(mc.vae)), rngs=r, **kw)),
        text_encoder=abstract_model(lambda r: CLIPTextModel(CLIPTextConfig.from_dict(dict(mc.text_encoder)), rngs=r, **kw)),
        tokenizer=default_tokenizer(), schedule=make_schedule())
    task = SVDiffTask(bundle, temporal=TemporalConfig(memory_hw=(args.memory, args.memory)),
                      objective=ObjectiveConfig(clip_frames=args.clip, remat=args.remat))
    tr = Trainer(task, optim=OptimConfig(), total_steps=1000, mesh=make_mesh({"data": -1}))
    t0 = time.perf_counter()
    out = {"flops": step_flops(tr, args), "trace_s": time.perf_counter() - t0}
    if args.compile:
        t0 = time.perf_counter()
        mem = tr.lower(args.batch, args.frames, args.size, args.size).compile().memory_analysis()
        out |= {"compile_s": time.perf_counter() - t0, "temp_bytes": mem.temp_size_in_bytes,
                "argument_bytes": mem.argument_size_in_bytes, "output_bytes": mem.output_size_in_bytes}
    return out


def torch_side(args, ucfg):
    import torch
    from diffusers.models.attention import BasicTransformerBlock

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tdt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    unet, _ = torch_unet_pair(ucfg, args.dtype, device)
    vae, _ = torch_vae_pair(dict(get_config(args.preset).vae), args.dtype, device)
    for p in list(unet.parameters()) + list(vae.parameters()):
        p.requires_grad_(False)
    nn = torch.nn
    hw = args.memory * args.memory
    mods, state = nn.ModuleList(), {}
    for name, blk in unet.named_modules():
        if isinstance(blk, BasicTransformerBlock):
            d, heads = blk.attn1.to_q.out_features, blk.attn1.heads
            mod = nn.ModuleDict(dict(norm=nn.LayerNorm(d), attn=nn.MultiheadAttention(d, heads, batch_first=True)))
            mod.w0 = nn.Parameter(torch.randn(hw, d) * 0.02)
            mod = mod.to(device=device, dtype=tdt)
            nn.init.zeros_(mod["attn"].out_proj.weight)
            nn.init.zeros_(mod["attn"].out_proj.bias)
            mods.append(mod)

            def hook(m, a, out, mod=mod, name=name):
                mem = state.get(name)
                if mem is None:
                    mem = mod.w0.expand(out.shape[0], -1, -1)
                cat = torch.cat([out, mem], 1)
                h = mod["norm"](cat)
                cat = cat + mod["attn"](h, h, h, need_weights=False)[0]
                state[name] = cat[:, out.shape[1]:]
                return cat[:, : out.shape[1]]

            blk.register_forward_hook(hook)
    opt = torch.optim.AdamW(mods.parameters(), lr=1e-4)
    ctx = torch.randn(args.batch, 77, ucfg["cross_attention_dim"], device=device, dtype=tdt)
    video = torch.rand(args.batch, args.frames, 3, args.size, args.size, device=device, dtype=tdt) * 2 - 1
    acp = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2, 0).to(device)

    def step():
        t = torch.randint(0, 1000, (args.batch,), device=device)
        a = acp[t].view(-1, 1, 1, 1).to(tdt)
        state.clear()
        opt.zero_grad()
        for c in range(0, args.frames, args.clip):
            for name in list(state):
                state[name] = state[name].detach()  # no gradient across the clip boundary
            loss = 0.0
            for f in range(c, c + args.clip):
                with torch.no_grad():
                    z0 = vae.encode(video[:, f]).latent_dist.sample() * 0.18215
                n = torch.randn_like(z0)
                pred = unet(a.sqrt() * z0 + (1 - a).sqrt() * n, t, ctx).sample
                loss = loss + ((pred.float() - n.float()) ** 2).mean() / args.frames
            loss.backward()
        opt.step()

    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"step_s": float(np.median(times[args.warmup:])), "peak_bytes": peak, "device": device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--clip", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--memory", type=int, default=4, help="memory side (h = w)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--remat", default="none", choices=["none", "frame", "block"])
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--analyze", action="store_true", help="no run: FLOPs of the traced step of an abstract model "
                    "(any size, any machine); --compile adds XLA's memory analysis")
    ap.add_argument("--compile", action="store_true", help="with --analyze: compile too, for the memory analysis")
    add_output_args(ap)
    args = ap.parse_args()
    if args.analyze:
        a = analyze(args)
        print(f"train step, {args.preset} {args.size}px, {args.batch} x {args.frames} frames in clips of {args.clip}, "
              f"{args.dtype}, remat {args.remat}: {a['flops'] / 1e9:.1f} GFLOP per step "
              f"({a['flops'] / 1e9 / (args.batch * args.frames):.2f} GFLOP per frame)"
              + (f", XLA temp {a['temp_bytes'] / 2**30:.1f} GiB + arguments {a['argument_bytes'] / 2**30:.1f} GiB"
                 if "temp_bytes" in a else ""))
        path = write_results(f"bench_train_{args.preset}_analysis_{jax.default_backend()}",
                             {"args": vars(args), "machine": machine(), **a}, update=args.update_results)
        print(f"wrote {path}")
        return
    ucfg = dict(get_config(args.preset).unet)
    j = jax_side(args, ucfg)
    t = None if args.no_torch else torch_side(args, ucfg)
    frames = args.batch * args.frames
    row = {"jaxvid": {**j, "steps_per_s": 1 / j["step_s"], "frames_per_s": frames / j["step_s"],
                      "gflops_per_s": j["flops"] / j["step_s"] / 1e9}}
    if t:
        row["torch"] = {**t, "steps_per_s": 1 / t["step_s"], "frames_per_s": frames / t["step_s"]}
        row["torch_over_jaxvid"] = t["step_s"] / j["step_s"]
    print(f"train step, {args.preset} {args.size}px, {args.batch} x {args.frames} frames in clips of {args.clip}: "
          f"jaxvid {j['step_s']:.3f}s ({frames / j['step_s']:.1f} frames/s, compile {j['compile_s']:.0f}s, "
          f"XLA temp {j['temp_bytes'] / 2**20 if j['temp_bytes'] else float('nan'):.0f} MiB)"
          + (f" | torch {t['step_s']:.3f}s | torch/jaxvid {t['step_s'] / j['step_s']:.2f}" if t else ""))
    path = write_results(f"bench_train_{args.preset}_{jax.default_backend()}",
                         {"args": vars(args), "machine": machine(), **row}, update=args.update_results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
