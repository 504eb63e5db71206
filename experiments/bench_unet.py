"""UNet forward time: jaxvid (jit) vs diffusers PyTorch, same config, same weights, same machine.

    python experiments/bench_unet.py --preset tiny --batches 1 2 4            # CPU, seconds
    python experiments/bench_unet.py --preset sd15 --batches 1 2 --iters 3    # CPU, full SD1.5 at 512x512
    python experiments/bench_unet.py --preset sd15 --dtype bfloat16 --batches 1 2 4 8 --attention cudnn  # GPU

Prints one row per batch size with the ratio torch_ms / jaxvid_ms (> 1: jaxvid faster) and
the max abs difference of the two outputs (same work check), writes
``outputs/bench/bench_unet_<preset>_<dtype>_<backend>.json`` and a bar chart PNG (``--update-results``:
the committed ``experiments/results/``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from configs.models import get_config  # noqa: E402
from experiments.common import add_output_args, machine, max_abs_diff, time_calls, torch_unet_pair, write_results  # noqa: E402
from jaxvid.models.attention import attention_kernel_names as attention_kernels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny", help="configs/models.py preset (tiny, sd15, lcm_sd15, sd21)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--resolution", type=int, help="pixels (default: the preset's sample_size * 8)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--attention", default="auto", choices=attention_kernels())
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: torch's own choice)")
    add_output_args(ap)
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = dict(get_config(args.preset).unet)
    latent = (args.resolution // 8) if args.resolution else cfg["sample_size"]
    ref, ours = torch_unet_pair(cfg, args.dtype, device, attention_kernel=args.attention)
    graphdef, state = nnx.split(ours)

    @jax.jit
    def fwd(state, x, t, ctx):
        return nnx.merge(graphdef, state)(x, t, ctx)

    rows = []
    print(f"UNet {args.preset} {latent * 8}px ({latent}x{latent} latents) {args.dtype} | jax: {jax.devices()[0]} | torch: {device}")
    print(f"{'batch':>5} {'jaxvid ms':>10} {'torch ms':>10} {'torch/jaxvid':>12} {'max|diff|':>10}")
    for b in args.batches:
        rng = np.random.default_rng(b)
        x = rng.standard_normal((b, latent, latent, 4), np.float32)
        ctx = rng.standard_normal((b, 77, cfg["cross_attention_dim"]), np.float32)
        t = np.full((b,), 500, np.int32)
        jx = [jnp.asarray(a) for a in (x, t, ctx)]
        jx[0], jx[2] = jx[0].astype(ours.dtype), jx[2].astype(ours.dtype)
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2)).to(device, ref.dtype)
        tc = torch.from_numpy(ctx).to(device, ref.dtype)
        tt = torch.from_numpy(t).to(device)

        def run_torch():
            with torch.inference_mode():
                return ref(tx, tt, tc).sample

        def sync_torch(out):
            if device == "cuda":
                torch.cuda.synchronize()

        j = time_calls(lambda: fwd(state, *jx), warmup=args.warmup, iters=args.iters, sync=jax.block_until_ready)
        p = time_calls(run_torch, warmup=args.warmup, iters=args.iters, sync=sync_torch)
        diff = max_abs_diff(fwd(state, *jx), run_torch().float().cpu().numpy().transpose(0, 2, 3, 1))
        ratio = p["median_ms"] / j["median_ms"]
        rows.append({"batch": b, "jaxvid": j, "torch": p, "torch_over_jaxvid": ratio, "max_abs_diff": diff})
        print(f"{b:>5} {j['median_ms']:>10.1f} {p['median_ms']:>10.1f} {ratio:>12.2f} {diff:>10.2e}", flush=True)

    name = f"bench_unet_{args.preset}_{args.dtype}_{jax.default_backend()}_{args.attention}"
    path = write_results(name, {"args": vars(args), "latent": latent, "machine": machine(),
                                "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "rows": rows}, update=args.update_results)
    print(f"wrote {path}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        xs = np.arange(len(rows))
        ax.bar(xs - 0.2, [r["jaxvid"]["median_ms"] for r in rows], 0.4, label="jaxvid (jit)")
        ax.bar(xs + 0.2, [r["torch"]["median_ms"] for r in rows], 0.4, label="diffusers (torch)")
        ax.set_xticks(xs, [str(r["batch"]) for r in rows])
        ax.set_xlabel("batch")
        ax.set_ylabel("ms per UNet forward (median)")
        ax.set_title(f"UNet {args.preset} {latent * 8}px {args.dtype} on {jax.default_backend()}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path.with_suffix(".png"), dpi=120)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
