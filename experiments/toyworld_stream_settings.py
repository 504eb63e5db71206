"""Which stream settings suit the built-in model? The zero-memory stream (the base model alone)
over inversion mode x LCM steps x guidance, on the quality test's clips (``ToyWorld(seed=7)``
clips 2-7, background-colour edits, 24 frames): temporal PSNR against the ground truth's motion
and colour accuracy. The choice it supports is ``configs/stream.py:builtin``.

    python experiments/toyworld_stream_settings.py        # about 6 min on 2 cores

Writes ``outputs/bench/toyworld_stream_settings.json`` (``--update-results``: experiments/results/).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import add_output_args, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inversions", nargs="+", default=["consistency", "lcm", "noise"])
    ap.add_argument("--steps", nargs="+", type=int, default=[2, 4])
    ap.add_argument("--guidance", nargs="+", type=float, default=[1.0, 3.0, 6.0])
    add_output_args(ap)
    args = ap.parse_args()

    from jaxvid.data.toyworld import ToyWorld
    from jaxvid.evaluation.datasets import EvalItem
    from jaxvid.evaluation.methods import build
    from jaxvid.metrics.toyworld import toy_metrics
    from jaxvid.pipelines.default import default_bundle, default_model_dir
    from jaxvid.pipelines.svdiff import StreamConfig

    model = default_bundle()
    edits = [ToyWorld(7, size=64).edit(i, "background_color", frames=24) for i in range(2, 8)]
    rows = []
    for inversion, steps, guidance in itertools.product(args.inversions, args.steps, args.guidance):
        t0 = time.time()
        cfg = dataclasses.replace(StreamConfig(), steps=steps, guidance=guidance, inversion=inversion)
        m = build("svdiff-zero", model, model_dir=default_model_dir(), edit_config=None, stream_config=cfg)
        scores = [toy_metrics(np.asarray(m.run(EvalItem(str(i), e.source, e.source_caption, e.target_caption,
                                                        e.kind, e))[0]), e) for i, e in enumerate(edits)]
        rows.append(dict(inversion=inversion, steps=steps, guidance=guidance,
                         temporal_psnr=round(float(np.mean([r["temporal_psnr"] for r in scores])), 3),
                         attr_acc=round(float(np.mean([r["attr_acc"] for r in scores])), 3),
                         seconds=round(time.time() - t0, 1)))
        print(rows[-1], flush=True)
    print(f"wrote {write_results('toyworld_stream_settings', {'rows': rows}, args.update_results)}")


if __name__ == "__main__":
    main()
