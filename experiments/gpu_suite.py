"""Everything only a GPU shows, in one run (< 8 minutes on an H100/H200), written to one JSON.

    python experiments/gpu_suite.py --out gpu_suite.json            # on a CUDA machine
    python experiments/gpu_suite.py --smoke --out smoke.json         # tiny shapes, any backend (checks the script)

Sections (each timed after warm-up, each guarded by the time budget so a slow one cannot take
the rest down; results are written after every section):

1. ``unet``: SD1.5 UNet 512x512 bf16 (random weights copied from a diffusers UNet, so both
   sides do the same work), batch 1 and 8: jaxvid with the ``xla``, ``cudnn`` and ``blocked``
   kernels vs diffusers eager and ``torch.compile``; MFU = model FLOPs (XLA's count of the
   lowered explicit-attention program) / time / peak bf16 FLOP/s.
2. ``train``: the full SVDiff training step (``auto`` attention kernel, as users get it) (SD1.5 bf16 frozen, 8x8 memory after all 16 blocks,
   one 64-frame video in clips of 8, per-frame remat): step time, MFU, and XLA's memory analysis.
3. ``stream``: SVDiff streaming at 512x512, 3 LCM steps, CFG, tiny autoencoder: FPS and latency
   in paper mode (LCM inversion) with and without stream batch, and inversion-free mode.
4. ``fastvideoedit``: 32 frames at 512x512, 15 steps, TokenFlow, CFG: seconds per clip.
5. ``toyworld``: the built-in model's recipe (``tools/build_toyworld.py``) on this GPU: every
   stage trained from scratch for a fraction of its steps (``--toyworld-fraction``) through the
   same ``jaxvid train`` code, with its wall time (compile included), steady steps/s, and the
   full stage's time extrapolated from them.

The machine lacks diffusers, ml_collections, grain and tensorboardX (and may have another flax):
carry wheels, see docs/benchmarks.md ("GPU: one H200").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs.models import get_config  # noqa: E402
from experiments.common import machine  # noqa: E402

PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}  # dense bf16 tensor-core FLOP/s


def peak_flops() -> float | None:
    kind = jax.devices()[0].device_kind
    return next((v for k, v in PEAK_BF16.items() if k in kind), None)


def timed(fn, sync, *, warmup=1, iters=5) -> dict:
    t0 = time.perf_counter()
    for _ in range(warmup):
        sync(fn())
    first = time.perf_counter() - t0
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        sync(fn())
        ts.append(time.perf_counter() - t)
    return {"median_ms": float(np.median(ts) * 1e3), "min_ms": float(np.min(ts) * 1e3), "first_call_s": first}


def flops_of(lowered) -> float | None:
    """FLOPs of a *lowered* (not yet optimised) program. After GPU optimisation XLA's count leaves
    out cuBLAS/cuDNN custom calls (on the H200 it reported the same FLOPs for UNet batch 1 and 8),
    so MFU uses the lowered count of the explicit-attention program: the model's FLOPs."""
    try:
        cost = lowered.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        return float(cost.get("flops", 0.0)) or None
    except Exception:
        return None


class Suite:
    def __init__(self, out: Path, budget_s: float):
        self.out, self.budget, self.t0 = out, budget_s, time.perf_counter()
        self.result = {"machine": machine(), "peak_bf16_flops": peak_flops(), "sections": {}}

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)

    def run(self, name: str, fn, need_s: float) -> None:
        if self.left() < need_s:
            self.result["sections"][name] = {"skipped": f"time budget ({self.left():.0f}s left, needs ~{need_s:.0f}s)"}
        else:
            t = time.perf_counter()
            try:
                self.result["sections"][name] = {**fn(), "section_s": time.perf_counter() - t}
            except Exception as e:
                self.result["sections"][name] = {"error": f"{type(e).__name__}: {e}",
                                                 "traceback": traceback.format_exc()[-3000:]}
        print(json.dumps({name: self.result["sections"][name]}, default=float)[:3000], flush=True)
        self.out.write_text(json.dumps(self.result, indent=2, default=float))


def mfu(flops, ms):
    peak = peak_flops()
    return None if not (flops and peak) else flops / (ms / 1e3) / peak


def unet_section(args, pair):
    import torch
    from flax import nnx

    ref, ours_by_kernel = pair
    cfg = dict(get_config(args.preset).unet)
    lat = args.size // 8
    rows = []
    for b in args.batches:
        rng = np.random.default_rng(b)
        x = rng.standard_normal((b, lat, lat, 4), np.float32)
        ctx = rng.standard_normal((b, 77, cfg["cross_attention_dim"]), np.float32)
        t = np.full((b,), 500, np.int32)
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2)).to(args.device, ref.dtype)
        tc, tt = torch.from_numpy(ctx).to(args.device, ref.dtype), torch.from_numpy(t).to(args.device)
        sync_t = (lambda _: torch.cuda.synchronize()) if args.device == "cuda" else (lambda _: None)
        with torch.inference_mode():
            eager = timed(lambda: ref(tx, tt, tc).sample, sync_t)
            want = ref(tx, tt, tc).sample.float().cpu().numpy().transpose(0, 2, 3, 1)
        row = {"batch": b, "torch_eager": eager}
        jx = (jnp.asarray(x, jnp.bfloat16), jnp.asarray(t), jnp.asarray(ctx, jnp.bfloat16))
        fwds = {k: jax.jit(lambda s, x, t, c, g=g: nnx.merge(g, s)(x, t, c)) for k, (g, _) in ours_by_kernel.items()}
        model_flops = flops_of(fwds["xla"].lower(ours_by_kernel["xla"][1], *jx))
        row["model_flops"] = model_flops
        eager["mfu"] = mfu(model_flops, eager["median_ms"])
        for kernel, (_, state) in ours_by_kernel.items():
            if kernel == "blocked" and b != args.batches[0]:
                continue  # the CPU kernel, measured once on the GPU for completeness
            try:
                t0 = time.perf_counter()
                compiled = fwds[kernel].lower(state, *jx).compile()  # compiled once, then timed
                compile_s = time.perf_counter() - t0
                res = timed(lambda: compiled(state, *jx), jax.block_until_ready)
                got = np.asarray(compiled(state, *jx), np.float32)
                res.update(compile_s=compile_s, mfu=mfu(model_flops, res["median_ms"]),
                           max_abs_diff_vs_torch=float(np.abs(got - want).max()),
                           torch_eager_over_jaxvid=eager["median_ms"] / res["median_ms"])
            except Exception as e:
                res = {"error": f"{type(e).__name__}: {e}"[:500]}
            row[f"jaxvid_{kernel}"] = res
        if args.torch_compile and (b == args.batches[0] or args.budget_left() > 200):
            try:
                compiled = torch.compile(ref)
                with torch.inference_mode():
                    row["torch_compile"] = timed(lambda: compiled(tx, tt, tc).sample, sync_t, warmup=2)
                row["torch_compile"]["mfu"] = mfu(model_flops, row["torch_compile"]["median_ms"])
            except Exception as e:
                row["torch_compile"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        rows.append(row)
    return {"size": args.size, "dtype": "bfloat16", "rows": rows}


def random_parts(args, dtype):
    """Random full-size VAE, tiny AE and CLIP text encoder (host-initialised: no compile)."""
    from jaxvid.models.build import random_model
    from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
    from jaxvid.models.tiny_vae import AutoencoderTiny, TinyVAEConfig
    from jaxvid.models.vae import AutoencoderKL, VAEConfig

    c = get_config(args.preset)
    kw = dict(dtype=dtype, param_dtype=dtype)
    vae = random_model(lambda r: AutoencoderKL(VAEConfig.from_dict(dict(c.vae)), rngs=r, **kw))
    taesd = TinyVAEConfig() if not args.smoke else TinyVAEConfig(
        encoder_block_out_channels=(8,) * 4, decoder_block_out_channels=(8,) * 4, num_encoder_blocks=(1,) * 4,
        num_decoder_blocks=(1,) * 4)
    tiny = random_model(lambda r: AutoencoderTiny(taesd, rngs=r, **kw))
    text = random_model(lambda r: CLIPTextModel(CLIPTextConfig.from_dict(dict(c.text_encoder)), rngs=r, **kw))
    return vae, tiny, text


def bundle_for(args, unet, vae, text):
    from jaxvid.pipelines.bundle import ModelBundle
    from jaxvid.schedulers.schedule import make_schedule
    from jaxvid.text import default_tokenizer

    return ModelBundle(unet=unet, vae=vae, text_encoder=text, tokenizer=default_tokenizer(),
                       schedule=make_schedule(set_alpha_to_one=True), source="random")


def train_section(args, unet, parts):
    from jaxvid.models.temporal import TemporalConfig
    from jaxvid.sharding import make_mesh
    from jaxvid.training.optim import OptimConfig
    from jaxvid.training.tasks.svdiff import ObjectiveConfig, SVDiffTask
    from jaxvid.training.trainer import Trainer

    vae, _, text = parts
    frames = args.train_frames
    task = SVDiffTask(bundle_for(args, unet, vae, text), temporal=TemporalConfig(),
                      objective=ObjectiveConfig(clip_frames=min(8, frames), remat="frame"))
    tr = Trainer(task, optim=OptimConfig(), total_steps=100, mesh=make_mesh({"data": -1}))
    rng = np.random.default_rng(0)
    batch = {"video": rng.integers(0, 255, (1, frames, args.size, args.size, 3), dtype=np.uint8),
             "ids": np.tile(np.asarray(task.uncond_ids), (1, 1))}
    state = tr.init(0)
    gb = tr.global_batch(batch)
    t = time.perf_counter()
    lowered = tr._step.lower(state, tr.frozen, gb)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    times = []
    for _ in range(args.train_steps):
        t = time.perf_counter()
        state, m = compiled(state, tr.frozen, gb)
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t)
    step_ms = float(np.median(times[1:] if len(times) > 1 else times) * 1e3)
    # every scanned frame counted (XLA's cost analysis counts a scan body once); fused cuDNN
    # attention is opaque to the count, so with it this is a lower bound
    from jaxvid.flops import count_flops

    fl = count_flops(tr.step_fn, state, tr.frozen, gb)
    memory = {k: getattr(mem, k) for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                                           "generated_code_size_in_bytes") if mem is not None and hasattr(mem, k)}
    return {"frames": frames, "clip_frames": min(8, frames), "batch": 1, "compile_s": compile_s, "step_ms": step_ms,
            "frames_per_s": frames / (step_ms / 1e3), "flops": fl, "mfu": mfu(fl, step_ms), "memory": memory,
            "loss": float(m["loss"]), "steps_timed": len(times)}


def stream_section(args, unet, parts):
    from jaxvid.models.temporal import TemporalConfig, temporal_unet
    from jaxvid.pipelines.svdiff import StreamConfig, StreamEditor

    _, tiny, text = parts
    bundle = bundle_for(args, unet, tiny, text)
    model = temporal_unet(unet, TemporalConfig())
    frames = (np.random.default_rng(0).random((args.stream_frames, args.size, args.size, 3)) * 255).astype(np.uint8)
    rows = []
    for mode, batched in (("lcm", False), ("lcm", True), ("consistency", False)):
        if rows and args.budget_left() < 60:
            rows.append({"inversion": mode, "stream_batch": batched, "skipped": "time budget"})
            continue
        ed = StreamEditor(bundle, model, "a watercolor painting of a car", StreamConfig(
            steps=3, inversion=mode, guidance=1.0, stream_batch=batched), height=args.size, width=args.size)
        state = ed.init_state()
        times = []
        t0 = time.perf_counter()
        for f in frames:
            t = time.perf_counter()
            out, _, state = ed.step(state, f)
            jax.block_until_ready(out)
            times.append(time.perf_counter() - t)
        steady = times[2:]
        rows.append({"inversion": mode, "stream_batch": batched, "fps": len(steady) / sum(steady),
                     "latency_ms": float(np.median(steady) * 1e3) * (3 if batched else 1),
                     "step_ms": float(np.median(steady) * 1e3), "first_frame_s": times[0],
                     "total_s": time.perf_counter() - t0})
    return {"size": args.size, "steps": 3, "guidance": "cfg", "autoencoder": "tiny", "rows": rows,
            "note": "latency with stream batch = step time x 3 (a frame leaves 2 calls after it arrives)"}


def fve_section(args, unet, parts):
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    vae, _, text = parts
    ed = FastVideoEditor(bundle_for(args, unet, vae, text), FastVideoEditConfig(steps=args.fve_steps))
    frames = (np.random.default_rng(0).random((args.fve_frames, args.size, args.size, 3)) * 255).astype(np.uint8)
    runs = []
    for _ in range(2):
        r = ed.edit(frames, "a red car on a road", "a blue car on a road")
        runs.append(r.timings)
    return {"frames": args.fve_frames, "size": args.size, "steps": args.fve_steps, "first_run": runs[0],
            "second_run": runs[1], "seconds_per_clip": sum(runs[1].values())}


def toyworld_section(args):
    import tempfile

    from configs.toyworld import get_config as toyworld_config
    from jaxvid.training.logger import read_metrics
    from tools.build_toyworld import STAGES, run_stage, stage_dir

    runs = Path(tempfile.mkdtemp(prefix="toyworld-gpu-"))
    rows = []
    for stage in STAGES:
        full = toyworld_config(stage).steps
        steps = max(args.toyworld_min_steps, round(full * args.toyworld_fraction))
        if args.budget_left() < 45:
            rows.append({"stage": stage, "skipped": "time budget"})
            continue
        log_every = max(1, steps // 10)
        t = time.perf_counter()
        run_stage(stage, runs, [f"steps={steps}", f"log_every={log_every}", f"checkpoint_every={steps}"])
        wall = time.perf_counter() - t
        logged = [r for r in read_metrics(stage_dir(runs, stage)) if "steps_per_s" in r]
        # the logged rate is cumulative from the first step (compile included): the steady rate is
        # the slope between the first and the last logged rows
        (s0, r0), (s1, r1) = [(r["step"], r["steps_per_s"]) for r in (logged[0], logged[-1])]
        steady = (s1 - s0) / (s1 / r1 - s0 / r0) if s1 > s0 else None
        rows.append({"stage": stage, "steps_run": steps, "full_steps": full, "wall_s": wall,
                     "steady_steps_per_s": steady, "final_loss": logged[-1].get("loss"),
                     "estimated_full_stage_s": wall + (full - steps) / steady if steady else None})
    done = [r for r in rows if "estimated_full_stage_s" in r]
    return {"fraction": args.toyworld_fraction, "rows": rows,
            "estimated_recipe_s": sum(r["estimated_full_stage_s"] for r in done) if len(done) == len(STAGES) else None,
            "note": "checkpoint once per stage (at its end); the full recipe checkpoints every 250 steps"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/gpu_suite.json"))
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes: check the script on any backend")
    ap.add_argument("--sections", nargs="+", default=["unet", "train", "stream", "fastvideoedit", "toyworld"])
    ap.add_argument("--toyworld-fraction", type=float, default=0.2, help="share of each recipe stage's steps run")
    args = ap.parse_args()
    import torch

    args.device = "cuda" if torch.cuda.is_available() else "cpu"
    smoke = args.smoke
    args.preset = "tiny" if smoke else "sd15"
    args.size = 128 if smoke else 512
    args.batches = [1, 2] if smoke else [1, 8]
    args.torch_compile = not smoke
    args.train_frames, args.train_steps = (8, 2) if smoke else (64, 3)
    args.stream_frames = 6 if smoke else 24
    args.fve_frames, args.fve_steps = (8, 2) if smoke else (32, 15)
    args.toyworld_min_steps = 2 if smoke else 20
    if smoke:
        args.toyworld_fraction = min(args.toyworld_fraction, 0.005)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    suite = Suite(args.out, args.budget)
    args.budget_left = suite.left

    sd15 = None

    def sd15_parts():
        """The full-size UNet pair (torch reference, jaxvid per kernel) and random VAE/TAESD/CLIP, built once."""
        nonlocal sd15
        if sd15 is None:
            from flax import nnx

            from experiments.common import torch_unet_pair

            t = time.perf_counter()
            ref, ours = torch_unet_pair(dict(get_config(args.preset).unet), "bfloat16", args.device, attention_kernel="xla")
            state = nnx.state(ours)  # the kernel is in the graph definition: one per kernel, same arrays
            kernels = {k: (nnx.graphdef(_with_kernel(ours, k)), state) for k in ("xla", "cudnn", "blocked")}
            unet = nnx.merge(nnx.graphdef(_with_kernel(ours, "auto")), state)  # what users get by default
            sd15 = (ref, kernels, unet, random_parts(args, jnp.bfloat16))
            suite.result["setup_s"] = time.perf_counter() - t
        return sd15

    for name in args.sections:
        fn = {"unet": lambda: unet_section(args, sd15_parts()[:2]),
              "train": lambda: train_section(args, *sd15_parts()[2:]),
              "stream": lambda: stream_section(args, *sd15_parts()[2:]),
              "fastvideoedit": lambda: fve_section(args, *sd15_parts()[2:]),
              "toyworld": lambda: toyworld_section(args)}[name]
        suite.run(name, fn, need_s={"unet": 60, "train": 90, "stream": 60, "fastvideoedit": 60, "toyworld": 60}[name])
    suite.result["total_s"] = time.perf_counter() - suite.t0
    args.out.write_text(json.dumps(suite.result, indent=2, default=float))
    print(f"wrote {args.out} in {suite.result['total_s']:.0f}s")


def _with_kernel(unet, kernel: str):
    """The same UNet (same arrays) built with another attention kernel."""
    import dataclasses


    from jaxvid.models.build import abstract_model
    from jaxvid.models.unet import UNet2DConditionModel

    cfg = dataclasses.replace(unet.config, attention_kernel=kernel)
    return abstract_model(lambda r: UNet2DConditionModel(cfg, rngs=r, dtype=unet.dtype, param_dtype=unet.dtype))


if __name__ == "__main__":
    main()
