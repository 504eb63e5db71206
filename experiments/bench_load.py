"""Start-up: how long loading a model takes, against how long merely reading its files takes.

    python experiments/bench_load.py                  # built-in model + an SD1.5-sized folder
    python experiments/bench_load.py --skip-sd15

* built-in model: ``default_bundle()`` in a fresh process (imports excluded, reported apart),
  and a second load in the same process;
* SD1.5: a random SD1.5-sized diffusers folder (fp16 safetensors, 1.0B parameters, written once
  to ``outputs/bench/sd15_random``) loaded with ``load_pipeline`` in float32 and float16, against
  reading every weight file's bytes (the disk/page-cache bound) in the same run. Both are timed
  with the files in the page cache (this machine cannot drop it), so the ratio is what jaxvid
  adds over the read. Best of ``--repeats``, and the first load of each dtype apart (it also
  traces the modules' structure, which later loads in the process reuse).

No PyTorch rows: the comparison that matters is against the bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import OUTPUTS, add_output_args, write_results  # noqa: E402

CHILD = """
import time, json
t0 = time.perf_counter()
import jax, jax.numpy as jnp
from jaxvid.pipelines.default import default_bundle
t1 = time.perf_counter()
b = default_bundle()
jax.block_until_ready(jax.tree.leaves(__import__('flax').nnx.state(b.unet)))
t2 = time.perf_counter()
b = default_bundle()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "first_load_s": t2 - t1, "second_load_s": t3 - t2}))
"""


def read_bytes(folder: Path) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for p in sorted(folder.rglob("*.safetensors")):
        with p.open("rb") as f:
            while chunk := f.read(1 << 24):
                n += len(chunk)
    return time.perf_counter() - t0, n


def sd15_folder() -> Path:
    import numpy as np

    from jaxvid.pipelines.bundle import save_pipeline
    from jaxvid.pipelines.default import random_bundle

    folder = OUTPUTS / "sd15_random"
    if not (folder / "model_index.json").exists():
        print("writing a random SD1.5-sized folder (once)...", flush=True)
        save_pipeline(random_bundle("sd15"), folder, dtype=np.float16)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-sd15", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    add_output_args(ap)
    args = ap.parse_args()
    results: dict = {}

    runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD], capture_output=True, check=True,
                                      text=True).stdout.strip().splitlines()[-1]) for _ in range(args.repeats)]
    results["builtin"] = {k: min(r[k] for r in runs) for k in runs[0]}
    print("built-in model:", {k: round(v, 2) for k, v in results["builtin"].items()})

    if not args.skip_sd15:
        import jax
        import jax.numpy as jnp
        from flax import nnx

        from jaxvid.pipelines.bundle import load_pipeline

        folder = sd15_folder()
        read_bytes(folder)  # into the page cache
        rows = {"read_s": [], "load_float32_s": [], "load_float16_s": []}
        for _ in range(args.repeats):
            s, nbytes = read_bytes(folder)
            rows["read_s"].append(s)
            for name, dt in (("load_float32_s", jnp.float32), ("load_float16_s", jnp.float16)):
                t0 = time.perf_counter()
                b = load_pipeline(folder, dtype=dt, param_dtype=dt)
                jax.block_until_ready([nnx.state(m) for m in (b.unet, b.vae, b.text_encoder)])
                rows[name].append(time.perf_counter() - t0)
                del b
        # the first load of each dtype also traces the modules' structure (kept for the process after)
        results["sd15"] = {k: min(v) for k, v in rows.items()} | {
            "first_load_float32_s": rows["load_float32_s"][0], "first_load_float16_s": rows["load_float16_s"][0],
            "bytes": nbytes, "read_gb_per_s": nbytes / min(rows["read_s"]) / 1e9}
        print("SD1.5 folder:", {k: round(v, 2) for k, v in results["sd15"].items()})
    path = write_results("bench_load_cpu", results, args.update_results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
