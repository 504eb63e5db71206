"""Each table of the two papers as one command, given local weights and data; on the toy world
(the default: no downloads) every command runs end to end with the built-in model.

    python experiments/paper_tables.py fve-table1 --model ./sd15 --lora ./lcm-lora-sdv1-5 \\
        --clip ./clip-vit-large-patch14 --dataset tgve:./loveu-tgve-2023 --max-frames 32
    python experiments/paper_tables.py fve-table2 ...         # ablations
    python experiments/paper_tables.py svdiff-table1 --model ./sd15 --lora ./lcm-lora-sdv1-5 \\
        --temporal ./trained/memory ./trained/window ./trained/shift ./trained/sliding ./trained/linear \\
        --clip ./clip-vit-large-patch14 --dataset prompts:./svdiff-eval
    python experiments/paper_tables.py svdiff-fig5 ...        # metrics vs video length
    python experiments/paper_tables.py svdiff-table3 --temporal ./mem1x1 ./mem8x8 ./mem16x16 ...
    python experiments/paper_tables.py svdiff-fig7 --temporal ./len8 ./len16 ./len32 ./len64 ...
    python experiments/paper_tables.py svdiff-fig8 --temporal ./positional ./learned ./shared ...

Results (markdown, CSV, plots, every output video, contact sheets) go to
``outputs/bench/<table>/`` (``--update-results``: ``experiments/results/<table>/``).

The papers' numbers beside the columns these fill:

* FastVideoEdit Table 1 (TGVE 2023, 76 videos, 32 frames, CLIP ViT-L/14 presumably; time on an
  A100 for 32 frames): Ours — Tem-Con 96.5, Txt-Sim 27.7, Clip-Acc 71.1, inversion -, forward
  61.7 s, sum 61.7 s (TokenFlow 96.5 / 25.5 / 54.7, 292.4 s; FateZero 95.7 / 24.9 / 35.8, 581.7 s).
  Columns filled: ``tem_con`` (x100 in the table), ``txt_sim``, ``clip_acc`` (x100),
  ``inversion_s``, ``forward_s``, ``total_s``. The user study (P, Q, C, T) is not reproducible here.
* FastVideoEdit Table 2 (ablations of Bg-Masa, CF-Masa, Re-CA, TokenFlow, latent blending): the
  paper prints the values as an image; the text reports that removing CF-Masa or TokenFlow
  lowers temporal consistency and that removing latent blending *raises* Tem-Con and Clip-Acc.
* SVDiff Table 1 (memory vs window / shift / sliding / efficient attention: temporal
  consistency, frame accuracy, extra parameters, GFLOPs, FPS): values are an image in the paper;
  the text: +1.53% temporal consistency over temporal shift for 2,887 extra GFLOPs, +49.7M
  parameters, 15.2 FPS at 512x512 on an RTX 4090. Columns: ``tem_con``, ``clip_acc``/``txt_sim``,
  ``extra_params``, ``gflops_per_frame``, ``fps``.
* SVDiff Fig. 5 (metrics vs video length, 32-150 frames): the text reports declines for efficient
  attention, window and sliding attention on long videos; SVDiff stays stable.
* SVDiff Table 3 (memory 1x1 / 8x8 / 16x16): 8x8 best (values in an image).
* SVDiff Fig. 7 (training video length 8 -> 64): temporal consistency +2.5%, frame accuracy flat.
* SVDiff Fig. 8 (spatial-aware memory vs no positional embedding): qualitative.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import OUTPUTS, RESULTS, add_output_args  # noqa: E402

TABLES = ("fve-table1", "fve-table2", "svdiff-table1", "svdiff-fig5", "svdiff-table3", "svdiff-fig7", "svdiff-fig8")


# the toy world's ablation modules (tools/build_toyworld.py --ablations writes them into --runs),
# by table, all trained for the same number of steps; memory-hw8 (8x8, positional, 16-frame
# videos, the paper's objective) is each table's reference
TOY_ABLATIONS = {"svdiff-table3": ["memory-hw1", "memory-hw8", "memory-hw16"],
                 "svdiff-fig7": ["memory-frames4", "memory-frames8", "memory-hw8"],
                 "svdiff-fig8": ["memory-hw8", "memory-initlearned"]}
LENGTHS = (16, 32, 64, 150)  # SVDiff Fig. 5 on the toy world: frames per clip


def methods_for(table: str, temporal: list[Path], runs: Path = Path("runs/toyworld")) -> list[str]:
    """The method names of a table; with no --temporal folders, the built-in model's modules."""
    if table == "fve-table1":
        return ["fve", "fve-released"]
    if table == "fve-table2":
        return ["fve", "fve-no_bg_masa", "fve-no_cf_masa", "fve-no_reca", "fve-no_tokenflow", "fve-no_blend"]
    if temporal:
        return [f"svdiff@{p}" for p in temporal] + (["svdiff-zero"] if table in ("svdiff-table1", "svdiff-fig5") else [])
    if table in TOY_ABLATIONS:
        names = []
        for name in TOY_ABLATIONS[table]:
            folder = runs / name / "export"
            if not (folder / "temporal_config.json").exists():
                raise SystemExit(f"{table}: {folder} is missing; train the toy world's ablations with "
                                 f"`python tools/build_toyworld.py --ablations --runs {runs}` or pass --temporal")
            names.append(f"svdiff@{folder}")
        return names
    from jaxvid.evaluation.methods import available
    from jaxvid.pipelines.default import default_model_dir

    return [m for m in available(default_model_dir()) if m.startswith("svdiff")]


def run_table(table: str, out: Path, *, dataset: str | None = None, temporal: list[Path] = (),
              runs: Path = Path("runs/toyworld"), clips: int = 8, frames: int = 16, extra: list[str] = ()) -> None:
    """One table through ``jaxvid eval`` (resumable); ``extra`` are more ``jaxvid eval`` arguments."""
    from jaxvid.cli import main as cli

    lengths = [f"toyworld:{max(2, clips // 2)}:{n}" for n in LENGTHS] if table == "svdiff-fig5" else None
    datasets = [dataset] if dataset else lengths or [f"toyworld:{clips}:{frames}"]
    for ds in datasets:
        sub = out / ds.replace(":", "_").replace("/", "_") if len(datasets) > 1 else out
        if cli(["eval", "--dataset", ds, "--methods", *methods_for(table, list(temporal), runs), "-o", str(sub), *extra]):
            raise SystemExit(f"jaxvid eval failed for {table} on {ds}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", choices=TABLES)
    ap.add_argument("--model", type=Path, help="diffusers SD folder (default: the built-in toy-world model)")
    ap.add_argument("--lora", type=Path, help="LoRA to fuse (e.g. LCM-LoRA)")
    ap.add_argument("--clip", type=Path, help="local CLIP folder (the CLIP metrics need one)")
    ap.add_argument("--dataset", default=None, help="tgve:ROOT, prompts:ROOT or toyworld[:N[:FRAMES]]")
    ap.add_argument("--temporal", type=Path, nargs="*", default=[], help="trained temporal-module folders")
    ap.add_argument("--runs", type=Path, default=Path("runs/toyworld"),
                    help="toy world: where tools/build_toyworld.py --ablations trained the ablation modules")
    ap.add_argument("--max-frames", type=int)
    ap.add_argument("--set", action="append", default=[], help="run config overrides (as jaxvid eval --set)")
    add_output_args(ap)
    args = ap.parse_args()

    out = (RESULTS if args.update_results else OUTPUTS) / args.table
    extra = [a for flag in ("model", "lora", "clip") if getattr(args, flag) for a in (f"--{flag}", str(getattr(args, flag)))]
    extra += ["--max-frames", str(args.max_frames)] if args.max_frames else []
    extra += [a for s in args.set for a in ("--set", s)]
    run_table(args.table, out, dataset=args.dataset, temporal=args.temporal, runs=args.runs, extra=extra)
    (out / "command.json").write_text(json.dumps({"argv": sys.argv}, indent=1))


if __name__ == "__main__":
    main()
