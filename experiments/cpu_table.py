"""The CPU before/after table of docs/benchmarks.md, from the JSON that ``cpu_suite.sh`` wrote:

    python experiments/cpu_table.py                  # from outputs/bench (the last suite run)
    python experiments/cpu_table.py --results        # from the committed experiments/results

Each row is one workload with the old default attention kernel (``xla``) and the new one
(``auto``: ``blocked`` on CPU), each against PyTorch timed in the same process; a ratio above 1
means jaxvid is faster. Rows whose JSON is missing are left out (the script says which).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import OUTPUTS, RESULTS  # noqa: E402

KERNELS = ("xla", "auto")


def rows(folder: Path) -> tuple[list[tuple[str, str, float, float, str]], list[str]]:
    """(workload, kernel, jaxvid, torch, unit) rows, and the files that were not there."""
    out, missing = [], []

    def load(name: str) -> dict | None:
        path = folder / name
        if not path.exists():
            missing.append(name)
            return None
        return json.loads(path.read_text())

    for k in KERNELS:
        for preset, label in (("tiny", "UNet tiny"), ("sd15", "UNet SD1.5 512px")):
            if u := load(f"bench_unet_{preset}_float32_cpu_{k}.json"):
                out += [(f"{label}, batch {r['batch']}", k, r["jaxvid"]["median_ms"], r["torch"]["median_ms"], "ms")
                        for r in u["rows"]]
        for variant, label in (("chunks", "no TokenFlow"), ("tokenflow", "TokenFlow")):
            if f := load(f"bench_fastvideoedit_tiny_float32_cpu_{variant}_{k}.json"):
                out.append((f"FastVideoEdit tiny 32 frames, {label}", k, statistics.median(f["jaxvid_s"]),
                            statistics.median(f["torch_s"]), "s/clip"))
        if s := load(f"bench_stream_tiny_float32_cpu_{k}.json"):
            out += [(f"stream {r['variant']} ({r['mode']}){'' if r['torch_same_work'] else ' *'}", k,
                     1000 / r["jaxvid_fps"], 1000 / r["torch_fps"], "ms/frame") for r in s["rows"]]
    return out, missing


def _num(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def markdown(table: list[tuple[str, str, float, float, str]]) -> str:
    lines = ["| workload | kernel | jaxvid | PyTorch | torch/jaxvid |", "| --- | --- | ---: | ---: | ---: |"]
    for name, k, j, t, unit in sorted(table, key=lambda r: (r[0], KERNELS.index(r[1]))):
        lines.append(f"| {name} | `{k}` | {_num(j)} {unit} | {_num(t)} {unit} | {t / j:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", action="store_true", help="read experiments/results instead of outputs/bench")
    args = ap.parse_args()
    table, missing = rows(RESULTS if args.results else OUTPUTS)
    print(markdown(table))
    if missing:
        print(f"\n(not measured yet: {', '.join(missing)})", file=sys.stderr)


if __name__ == "__main__":
    main()
