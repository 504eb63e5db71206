"""XLA:CPU flags that the pinned jaxlib accepts, measured one at a time against PyTorch:

    python experiments/bench_xla_flags.py                  # every flag set below, ~10 min
    python experiments/bench_xla_flags.py --sets default onednn

Each flag set runs, in a fresh process with ``XLA_FLAGS`` set, ``bench_ops.py`` (one SD1.5 UNet's
ops at 512 px, weighted by how often each runs: the SD1.5 signal) and ``bench_unet.py --preset
tiny --batches 1 8`` (the whole tiny UNet), each timing PyTorch in the same process. A flag the
jaxlib does not accept fails that set, which is reported, not fatal. Writes
``bench_xla_flags_cpu.json`` (outputs/bench, or experiments/results with --update-results).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import add_output_args, machine, write_results  # noqa: E402

FLAG_SETS = {
    "default": "",
    "fast_math": "--xla_cpu_enable_fast_math=true",  # changes results: the diff column says how much
    "onednn": "--xla_cpu_use_onednn=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "vector_width_512": "--xla_cpu_prefer_vector_width=512",
    "no_multi_thread_eigen": "--xla_cpu_multi_thread_eigen=false",
    "concurrency_scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}
HERE = Path(__file__).resolve().parent


def _ops(res: dict) -> dict:
    return {"sd15_ops_jaxvid_ms": res["weighted_jaxvid_ms"], "sd15_ops_torch_ms": res["weighted_torch_ms"]}


def _tiny(res: dict) -> dict:
    return {"tiny_unet": [{"batch": row["batch"], "jaxvid_ms": row["jaxvid"]["median_ms"],
                           "torch_ms": row["torch"]["median_ms"], "max_abs_diff": row["max_abs_diff"]}
                          for row in res["rows"]]}


# (script, its arguments, the JSON it writes, what this table keeps of it)
RUNS = (
    ("bench_ops.py", [], "bench_ops_cpu.json", _ops),
    ("bench_unet.py", ["--preset", "tiny", "--batches", "1", "8", "--iters", "10", "--attention", "auto"],
     "bench_unet_tiny_float32_cpu_auto.json", _tiny),
)


def run_set(flags: str) -> dict:
    """Both benchmarks under ``flags``; their JSON goes to a scratch folder read back here."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu", "JAXVID_BENCH_OUTPUTS": tmp}
        out: dict = {"flags": flags}
        for script, args, name, keep in RUNS:
            r = subprocess.run([sys.executable, str(HERE / script), *args], env=env, capture_output=True, text=True)
            if r.returncode != 0:
                out["error"] = f"{script}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
                return out
            out.update(keep(json.loads((Path(tmp) / name).read_text())))
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", choices=list(FLAG_SETS), default=list(FLAG_SETS))
    add_output_args(ap)
    args = ap.parse_args()
    rows = []
    for name in args.sets:
        row = {"set": name, **run_set(FLAG_SETS[name])}
        rows.append(row)
        if "error" in row:
            print(f"{name:24s} not usable: {row['error']}", flush=True)
            continue
        tiny = "  ".join(f"b{t['batch']} {t['torch_ms'] / t['jaxvid_ms']:.2f} (diff {t['max_abs_diff']:.1e})"
                         for t in row["tiny_unet"])
        print(f"{name:24s} SD1.5 ops torch/jaxvid {row['sd15_ops_torch_ms'] / row['sd15_ops_jaxvid_ms']:.2f} "
              f"({row['sd15_ops_jaxvid_ms']:.0f} ms) | tiny UNet {tiny}", flush=True)
    print(f"wrote {write_results('bench_xla_flags_cpu', {'machine': machine(), 'rows': rows}, args.update_results)}")


if __name__ == "__main__":
    main()
