"""Quality of the built-in model against the toy world's ground truth, one command:

    python experiments/toyworld_eval.py                      # every section, outputs/bench/toyworld_eval
    python experiments/toyworld_eval.py --sections fve identity --clips 4
    python experiments/toyworld_eval.py --update-results     # rewrite experiments/results/toyworld_eval

Sections (each a ``jaxvid eval`` run, resumable: finished videos are not recomputed):

* ``fve``: FastVideoEdit, full and with each control ablated (no CF-Masa, no Bg-Masa, no Re-CA,
  no blending, no TokenFlow), the released profile, and per-frame img2img as the floor;
* ``svdiff``: streaming with the trained memory vs an untrained (zero) memory vs each baseline;
* ``noise``: streaming with fresh noise per frame vs one fixed noise (``stream.noise``);
* ``lengths``: the same at 16, 32, 64 and 150 frames (SVDiff Fig. 5);
* ``memory_size``: memory 1x1 / 8x8 / 16x16 (Table 3), ``memory_init``: positional vs learned
  per-cell initial memory (Fig. 8), ``train_length``: trained on 4 / 8 / 16-frame videos (Fig. 7)
  — these need the ablation stages (``tools/build_toyworld.py --ablations``) in ``--runs``;
* ``identity``: the identity edit (target prompt = source prompt) against the source.

``--stream`` picks the streaming settings: ``paper`` (the default, what the committed report used:
the paper's LCM inversion, 3 steps, lambda 1) or ``builtin`` (``configs/stream.py:builtin``, what
``jaxvid stream`` and ``jaxvid eval`` now use with the built-in model).

Each section writes summary.md / summary.csv / summary.png and contact sheets; ``report.md``
gathers every table. Clips are toy-world scenes of seed 7 (training used seed 0), cycling the
four edit kinds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import OUTPUTS, RESULTS, add_output_args  # noqa: E402

SECTIONS = ("fve", "svdiff", "noise", "lengths", "memory_size", "memory_init", "train_length", "identity")
# sections that are a paper table on the toy world (experiments/paper_tables.py)
TABLES = {"svdiff": "svdiff-table1", "lengths": "svdiff-fig5", "memory_size": "svdiff-table3",
          "memory_init": "svdiff-fig8", "train_length": "svdiff-fig7"}
FVE = ["fve", "fve-no_cf_masa", "fve-no_bg_masa", "fve-no_reca", "fve-no_blend", "fve-no_tokenflow", "fve-released",
       "per_frame"]


def stream_sets(stream: str) -> list[str]:
    """``jaxvid eval --set`` items for the streaming settings (see the module docstring)."""
    from configs.stream import BUILTIN
    from jaxvid.pipelines.svdiff import StreamConfig

    values = BUILTIN if stream == "builtin" else {k: getattr(StreamConfig(), k) for k in BUILTIN}
    return [a for k, v in values.items() for a in ("--set", f"stream.{k}={v!r}")]


def identity(out: Path, clips: int, frames: int, stream: str) -> str:
    """PSNR of the identity edit to the source (FastVideoEdit and SVDiff's trained memory)."""
    import numpy as np

    from configs.edit import get_config
    from configs.stream import get_config as stream_config
    from jaxvid.data.toyworld import EDIT_KINDS, ToyWorld
    from jaxvid.evaluation.datasets import EvalItem
    from jaxvid.evaluation.methods import build
    from jaxvid.metrics.toyworld import psnr
    from jaxvid.pipelines.default import default_bundle, default_model_dir
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig
    from jaxvid.pipelines.svdiff import StreamConfig

    bundle = default_bundle()
    edit_cfg = FastVideoEditConfig(**get_config("attribute,builtin").edit.to_dict())
    kw = dict(model_dir=default_model_dir(), edit_config=edit_cfg,
              stream_config=StreamConfig(**stream_config("builtin" if stream == "builtin" else None).stream.to_dict()))
    rows = []
    for name in ("fve", "svdiff", "svdiff-zero"):
        m = build(name, bundle, **kw)
        vals = []
        for i in range(clips):
            e = ToyWorld(7, size=64).edit(i, EDIT_KINDS[i % 4], frames=frames)
            item = EvalItem(f"id{i}", e.source, e.source_caption, e.source_caption, "identity")
            frames_out, _ = m.run(item)
            vals.append(psnr(frames_out, e.source[: len(frames_out)]))
        rows.append({"method": name, "videos": clips, "identity_psnr": float(np.mean(vals)),
                     "worst": float(np.min(vals))})
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    md = ["| method | videos | identity PSNR dB | worst clip dB |", "| --- | ---: | ---: | ---: |"]
    md += [f"| {r['method']} | {r['videos']} | {r['identity_psnr']:.2f} | {r['worst']:.2f} |" for r in rows]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--clips", type=int, default=8, help="toy clips per section (lengths: half as many)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--runs", type=Path, default=Path("runs/toyworld"), help="ablation stages' training runs")
    ap.add_argument("--stream", choices=("paper", "builtin"), default="paper", help="streaming settings")
    add_output_args(ap)
    args = ap.parse_args()
    if args.clips < 1 or args.frames < 2:
        raise SystemExit("--clips must be >= 1 and --frames >= 2")

    from experiments.paper_tables import run_table
    from jaxvid.cli import main as cli

    root = (RESULTS if args.update_results else OUTPUTS) / "toyworld_eval"
    report = ["# Toy-world quality of the built-in model", "", f"`{' '.join(sys.argv)}`", ""]
    for section in args.sections:
        report += [f"## {section}" + (f" ({TABLES[section]})" if section in TABLES else ""), ""]
        out = root / section
        if section == "identity":
            report += [identity(out, args.clips, args.frames, args.stream), ""]
            continue
        if section in TABLES:
            run_table(TABLES[section], out, runs=args.runs, clips=args.clips, frames=args.frames,
                      extra=stream_sets(args.stream))
        else:
            ds = f"toyworld:{args.clips}:{args.frames}"
            runs = [("", FVE, [])] if section == "fve" else [
                (n, ["svdiff", "svdiff-zero"], ["--set", f"stream.noise={n}", *stream_sets(args.stream)])
                for n in ("fresh", "fixed")]
            for sub, methods, extra in runs:
                if cli(["eval", "--dataset", ds, "--methods", *methods, "-o", str(out / sub), *extra]):
                    raise SystemExit(f"jaxvid eval failed for {section} {sub}")
        for summary in sorted(out.rglob("summary.md")):
            rel = summary.parent.relative_to(out)
            report += ([f"### {rel}", ""] if str(rel) != "." else []) + [summary.read_text(), ""]
    (root / "report.md").write_text("\n".join(report) + "\n")
    print(f"wrote {root / 'report.md'}")


if __name__ == "__main__":
    main()
