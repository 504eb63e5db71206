"""Streaming editing speed: frames per second and per-frame latency of jaxvid's jitted SVDiff
step vs a PyTorch diffusers per-frame loop making the same UNet and VAE calls on the same
weights, per temporal variant and per inversion mode, side by side in one run.

    python experiments/bench_stream.py --preset tiny --size 128 --frames 24                  # CPU
    python experiments/bench_stream.py --preset sd15 --size 512 --dtype bfloat16 --attention cudnn   # GPU

Per frame (k = --steps LCM steps, guidance lambda > 0 so two rows per step): VAE encode; for
``lcm`` k inversion calls of the base UNet (batch 1); k denoising calls (batch 2; 3 for
``consistency``, which has no inversion); VAE decode. The PyTorch loop reproduces SVDiff's
memory attention with forward hooks after every transformer block, so ``memory`` rows do the
same work on both sides; for the baselines PyTorch runs the plain UNet (their extra cost is
jaxvid's alone: the comparison favours PyTorch there). Latency = median time of one step
(frame in -> edited frame out) with nothing queued. Writes
outputs/bench/bench_stream_<preset>_<dtype>_<backend>.json (``--update-results``: the committed experiments/results/).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.models import get_config  # noqa: E402
from experiments.common import add_output_args, machine, torch_unet_pair, torch_vae_pair, write_results  # noqa: E402
from jaxvid.models.attention import attention_kernel_names as attention_kernels  # noqa: E402


def torch_memory_hooks(torch, ref, hw=(8, 8)):
    """SVDiff memory attention after every diffusers BasicTransformerBlock (forward hooks)."""
    from diffusers.models.attention import BasicTransformerBlock

    nn = torch.nn
    state: dict = {}
    mods = []
    for name, blk in ref.named_modules():
        if isinstance(blk, BasicTransformerBlock):
            d, heads = blk.attn1.to_q.out_features, blk.attn1.heads
            mod = nn.ModuleDict(dict(norm=nn.LayerNorm(d), attn=nn.MultiheadAttention(d, heads, batch_first=True)))
            mod = mod.to(device=ref.device, dtype=ref.dtype).eval()
            mem0 = torch.zeros(1, hw[0] * hw[1], d, device=ref.device, dtype=ref.dtype)

            def hook(m, args, out, mod=mod, name=name, mem0=mem0):
                if not state.get("on"):  # inversion runs the base UNet, as in jaxvid
                    return out
                key = (name, state["step"])  # one memory per denoising step and branch row
                mem = state.get(key, mem0.expand(out.shape[0], -1, -1))
                cat = torch.cat([out, mem], 1)
                h = mod["norm"](cat)
                cat = cat + mod["attn"](h, h, h, need_weights=False)[0]
                state[key] = cat[:, out.shape[1]:]
                return cat[:, : out.shape[1]]

            mods.append(blk.register_forward_hook(hook))
    return state


def run_torch(ref, vae, args, mode, memory, ctx_dim, device):
    import torch

    hooks = torch_memory_hooks(torch, ref) if memory else {}
    dt = ref.dtype
    ctx = torch.randn(3, 77, ctx_dim, device=device, dtype=dt)
    frames = torch.rand(args.frames, 3, args.size, args.size, device=device, dtype=dt) * 2 - 1
    ts = [999, 759, 499, 259][: args.steps]

    def one(frame):
        z = vae.encode(frame[None]).latent_dist.mean * 0.18215
        x = z
        hooks["on"] = False
        if mode == "lcm":
            for t in reversed(ts):
                x = x + 0.01 * ref(x, t, ctx[2:3]).sample
        rows = 3 if mode == "consistency" else 2
        hooks["on"] = True
        for i, t in enumerate(ts):
            hooks["step"] = i
            e = ref(x.repeat(rows, 1, 1, 1), t, ctx[:rows]).sample
            x = x - 0.01 * e[:1]
        return vae.decode(x / 0.18215).sample

    times = []
    with torch.inference_mode():
        for f in frames:
            t0 = time.perf_counter()
            one(f)
            if device == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    return times[1:]


def run_jax(bundle, args, kind, mode):
    from jaxvid.models.temporal import TemporalConfig, temporal_unet
    from jaxvid.pipelines.svdiff import StreamConfig, StreamEditor

    model = temporal_unet(bundle.unet, TemporalConfig(kind=kind))
    cfg = StreamConfig(steps=args.steps, inversion=mode, guidance=1.0)
    ed = StreamEditor(bundle, model, "a blue car on a road", cfg, height=args.size, width=args.size)
    frames = (np.random.default_rng(0).random((args.frames, args.size, args.size, 3)) * 255).astype(np.uint8)
    state = ed.init_state()
    times = []
    for f in frames:
        t0 = time.perf_counter()
        out, _, state = ed.step(state, f)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    return times[1:], times[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--attention", default="auto", choices=attention_kernels())
    ap.add_argument("--kinds", nargs="+", default=["memory", "window", "shift", "sliding", "linear"])
    ap.add_argument("--modes", nargs="+", default=["lcm", "noise", "consistency"])
    add_output_args(ap)
    args = ap.parse_args()
    import torch

    from jaxvid.models.build import random_model
    from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
    from jaxvid.pipelines.bundle import ModelBundle
    from jaxvid.schedulers.schedule import make_schedule
    from jaxvid.text import default_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    mc = get_config(args.preset)
    ucfg = dict(mc.unet)
    ref, ours = torch_unet_pair(ucfg, args.dtype, device, attention_kernel=args.attention)
    tvae, jvae = torch_vae_pair(dict(mc.vae), args.dtype, device)
    tcfg = CLIPTextConfig.from_dict(dict(mc.text_encoder))
    bundle = ModelBundle(unet=ours, vae=jvae, text_encoder=random_model(lambda r: CLIPTextModel(tcfg, rngs=r)),
                         tokenizer=default_tokenizer(), schedule=make_schedule(set_alpha_to_one=True))
    rows = []
    print(f"stream {args.preset} {args.size}px {args.steps} LCM steps, guidance on, {args.dtype} | "
          f"jax {jax.devices()[0]} | torch {device}")
    print(f"{'variant':>8} {'mode':>12} {'jaxvid fps':>10} {'torch fps':>10} {'torch/jaxvid':>12} "
          f"{'jax lat ms':>10} {'torch lat ms':>12}")
    torch_cache: dict = {}
    for mode in args.modes:
        for kind in args.kinds:
            jt, first = run_jax(bundle, args, kind, mode)
            memory = kind == "memory"
            key = (mode, memory)
            if key not in torch_cache:
                r2, _ = torch_unet_pair(ucfg, args.dtype, device) if memory else (ref, None)
                torch_cache[key] = run_torch(r2, tvae, args, mode, memory, ucfg["cross_attention_dim"], device)
            tt = torch_cache[key]
            j, p = statistics.median(jt), statistics.median(tt)
            rows.append({"variant": kind, "mode": mode, "jaxvid_fps": 1 / j, "torch_fps": 1 / p, "jaxvid_latency_ms": j * 1e3,
                         "torch_latency_ms": p * 1e3, "torch_over_jaxvid": p / j, "jaxvid_first_frame_s": first,
                         "torch_same_work": memory or kind == "none"})
            print(f"{kind:>8} {mode:>12} {1 / j:>10.1f} {1 / p:>10.1f} {p / j:>12.2f} {j * 1e3:>10.1f} {p * 1e3:>12.1f}",
                  flush=True)
    path = write_results(f"bench_stream_{args.preset}_{args.dtype}_{jax.default_backend()}_{args.attention}",
                         {"args": vars(args), "machine": machine(), "torch": torch.__version__, "rows": rows}, update=args.update_results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
