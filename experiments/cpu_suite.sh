#!/usr/bin/env bash
# The CPU before/after table of docs/benchmarks.md in one run on an idle machine: every jaxvid
# row with the old default attention kernel (xla) and the new one (auto = blocked on CPU),
# each against PyTorch measured in the same process. Pass --update-results to rewrite the
# committed experiments/results/ (default: outputs/bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
U=("$@")
$PY experiments/bench_attention.py "${U[@]}"
for k in xla auto; do
  $PY experiments/bench_unet.py --preset tiny --batches 1 2 4 8 --iters 10 --attention $k "${U[@]}"
  $PY experiments/bench_unet.py --preset sd15 --batches 1 --warmup 1 --iters 3 --attention $k "${U[@]}"
  $PY experiments/bench_fastvideoedit.py --preset tiny --frames 32 --steps 15 --iters 2 --attention $k "${U[@]}"
  $PY experiments/bench_fastvideoedit.py --preset tiny --frames 32 --steps 15 --iters 2 --no-tokenflow --attention $k "${U[@]}"
  $PY experiments/bench_stream.py --preset tiny --size 128 --frames 24 --kinds memory window --modes lcm --attention $k "${U[@]}"
done
$PY experiments/bench_ops.py "${U[@]}"
$PY experiments/bench_train.py "${U[@]}"
$PY experiments/bench_load.py "${U[@]}"
$PY experiments/cpu_table.py $([ "${1:-}" = --update-results ] && echo --results)
