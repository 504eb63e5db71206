"""Attention kernels alone: jaxvid's ``xla`` and ``blocked`` kernels and ``jax.nn.dot_product_attention`` vs
torch ``scaled_dot_product_attention`` on the shapes the editors use, same machine, same run.

    python experiments/bench_attention.py

Shapes (batch, tokens, heads, head dim): joint 8-frame self-attention of the tiny model at
128 px (6, 2048, 4, 8); the same at SD1.5 head sizes (6, 2048, 8, 40); SD1.5's 64x64 level
per frame with CFG (2, 4096, 8, 40). Writes outputs/bench/bench_attention_<backend>.json
(``--update-results``: the committed experiments/results/).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

from experiments.common import add_output_args, machine, median_ms, write_results  # noqa: E402
from jaxvid.models.attention import get_attention_kernel  # noqa: E402

SHAPES = [(6, 2048, 4, 8), (6, 2048, 8, 40), (2, 4096, 8, 40)]


def main() -> None:
    import argparse

    import torch
    import torch.nn.functional as F

    ap = argparse.ArgumentParser(description=__doc__)
    add_output_args(ap)
    args = ap.parse_args()
    rows = []
    print(f"{'shape (B, L, H, D)':>22} {'xla ms':>8} {'blocked ms':>11} {'jax.nn ms':>10} {'torch sdpa ms':>14} "
          f"{'torch/blocked':>14}")
    for B, L, H, D in SHAPES:
        q, k, v = (jax.random.normal(kk, (B, L, H, D)) for kk in jax.random.split(jax.random.key(0), 3))
        xla = jax.jit(lambda q, k, v: get_attention_kernel("xla")(q, k, v, scale=D**-0.5))
        blocked = jax.jit(lambda q, k, v: get_attention_kernel("blocked")(q, k, v, scale=D**-0.5))
        ref = jax.jit(lambda q, k, v: jax.nn.dot_product_attention(q, k, v, scale=D**-0.5))
        tq, tk, tv = (torch.tensor(jax.device_get(a)).transpose(1, 2).contiguous() for a in (q, k, v))
        a = median_ms(lambda: xla(q, k, v), jax.block_until_ready)
        blk = median_ms(lambda: blocked(q, k, v), jax.block_until_ready)
        b = median_ms(lambda: ref(q, k, v), jax.block_until_ready)
        with torch.inference_mode():
            c = median_ms(lambda: F.scaled_dot_product_attention(tq, tk, tv), lambda _: None)
        rows.append({"shape": [B, L, H, D], "xla_ms": a, "blocked_ms": blk, "jax_nn_ms": b, "torch_sdpa_ms": c,
                     "torch_over_xla": c / a, "torch_over_blocked": c / blk})
        print(f"{str((B, L, H, D)):>22} {a:>8.1f} {blk:>11.1f} {b:>10.1f} {c:>14.1f} {c / blk:>14.2f}", flush=True)
    print(f"wrote {write_results(f'bench_attention_{jax.default_backend()}', {'machine': machine(), 'rows': rows}, args.update_results)}")


if __name__ == "__main__":
    main()
