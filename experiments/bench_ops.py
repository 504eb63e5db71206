"""Where the SD1.5 UNet's CPU time goes, op family by op family, jaxvid (XLA:CPU) vs PyTorch, on
the shapes of one 512x512 forward pass (batch 1): 3x3 convolutions, group norms, the GEGLU
feed-forward's dense layers, and self-attention with each jaxvid kernel vs torch's fused SDPA.

    python experiments/bench_ops.py
    XLA_FLAGS=--xla_cpu_... python experiments/bench_ops.py      # try an XLA:CPU flag

Each row: the op's median time on both sides and torch/jaxvid (> 1: jaxvid faster), and how many
times the op runs in one UNet forward (so rows can be weighed). Writes
outputs/bench/bench_ops_cpu.json (``--update-results``: experiments/results/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from experiments.common import add_output_args, machine, median_ms, write_results  # noqa: E402

# (side, channels, uses per forward) of SD1.5's four levels at 512x512
LEVELS = [(64, 320, 5), (32, 640, 5), (16, 1280, 5), (8, 1280, 7)]
ATTN = [(4096, 8, 40, 3 + 3), (1024, 8, 80, 2 + 3), (256, 8, 160, 2 + 3 + 1)]  # tokens, heads, head dim, uses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=5)
    add_output_args(ap)
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    from jaxvid.models.attention import get_attention_kernel
    from jaxvid.models.build import HostRngs
    from jaxvid.models.layers import group_norm

    rng = np.random.default_rng(0)
    jsync, tsync = jax.block_until_ready, (lambda _: None)
    rows = []

    def add(op, shape, uses, j, t):
        rows.append({"op": op, "shape": shape, "uses_per_forward": uses, "jaxvid_ms": j, "torch_ms": t,
                     "torch_over_jaxvid": t / j})
        print(f"{op:>22} {str(shape):>24} x{uses:<3} jaxvid {j:8.2f} ms  torch {t:8.2f} ms  ratio {t / j:5.2f}",
              flush=True)

    with torch.inference_mode():
        for side, c, uses in LEVELS:
            x = rng.standard_normal((1, side, side, c), np.float32)
            w = rng.standard_normal((3, 3, c, c), np.float32) * 0.02
            jx, jw = jnp.asarray(x), jnp.asarray(w)
            conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                                     dimension_numbers=("NHWC", "HWIO", "NHWC")))
            tx, tw = torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
            add("conv3x3", (side, side, c), 2 * uses, median_ms(lambda: conv(jx, jw), jsync, args.iters),
                median_ms(lambda: F.conv2d(tx, tw, padding=1), tsync, args.iters))
            norm = group_norm(c, 32, 1e-5, rngs=HostRngs(0))  # the UNet's own layer
            gnj = jax.jit(lambda x, norm=norm: norm(x))
            add("group_norm", (side, side, c), 2 * uses + 1, median_ms(lambda: gnj(jx), jsync, args.iters),
                median_ms(lambda: F.group_norm(tx, 32), tsync, args.iters))
        for tokens, heads, dim, uses in ATTN:
            c = heads * dim
            h = rng.standard_normal((tokens, c), np.float32)
            w1 = rng.standard_normal((c, 8 * c), np.float32) * 0.02
            ff = jax.jit(lambda h, w: h @ w)
            th, tw1 = torch.from_numpy(h), torch.from_numpy(w1)
            add("geglu_in dense", (tokens, c, 8 * c), uses, median_ms(lambda: ff(jnp.asarray(h), jnp.asarray(w1)), jsync,
                                                                   args.iters), median_ms(lambda: th @ tw1, tsync, args.iters))
            q, k, v = (rng.standard_normal((1, tokens, heads, dim), np.float32) for _ in range(3))
            tq, tk, tv = (torch.from_numpy(a.transpose(0, 2, 1, 3).copy()) for a in (q, k, v))
            t_sdpa = median_ms(lambda: F.scaled_dot_product_attention(tq, tk, tv), tsync, args.iters)
            for name in ("xla", "blocked"):
                kern = jax.jit(lambda q, k, v, name=name: get_attention_kernel(name)(q, k, v, scale=dim**-0.5))
                jq, jk, jv = (jnp.asarray(a) for a in (q, k, v))
                add(f"self-attention {name}", (tokens, heads, dim), uses, median_ms(lambda: kern(jq, jk, jv), jsync, args.iters),
                    t_sdpa)
    total_j = sum(r["jaxvid_ms"] * r["uses_per_forward"] for r in rows if "xla" not in r["op"])
    total_t = sum(r["torch_ms"] * r["uses_per_forward"] for r in rows if "xla" not in r["op"])
    print(f"weighted total (blocked attention): jaxvid {total_j:.0f} ms, torch {total_t:.0f} ms")
    path = write_results(f"bench_ops_{jax.default_backend()}", {"machine": machine(), "rows": rows,
                                                                "weighted_jaxvid_ms": total_j, "weighted_torch_ms": total_t},
                         update=args.update_results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
