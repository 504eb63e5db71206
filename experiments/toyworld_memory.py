"""Does a trained SVDiff memory make toy-world streams steadier? Memories vs a zero memory under
several stream settings, with a measure that separates flicker from lag.

    python experiments/toyworld_memory.py                                    # shipped memory vs zero
    python experiments/toyworld_memory.py --memories runs/toyworld/svdiff-long/export

For each method (zero memory, the shipped memory, each ``--memories`` folder) and stream setting,
on the quality test's clips (``ToyWorld(seed=7)`` clips 2-7, background-colour edits, 24 frames):

* ``temporal_psnr``: PSNR of the output's frame-to-frame changes against the ground truth's;
* ``still_rms``: RMS frame-to-frame change where the ground truth does not change — pure flicker
  (a memory that lags the motion would *lower* it; one that destabilises raises it);
* ``moving_rms``: RMS error of the frame-to-frame change where the ground truth moves;
* ``attr_acc`` and ``psnr_in``: whether the edit happened at all;
* with ``--identity``, ``identity_psnr``: PSNR to the source when the prompt is the source's own
  caption — how well the stream reconstructs at all (the autoencoder alone: about 27 dB).

A first row scores the unedited source as if it were the output: it has the ground truth's
motion, so it bounds the temporal measures of a method that stops editing.

Writes ``outputs/bench/toyworld_memory.json`` (a subset of the settings:
``toyworld_memory_<settings>.json``; ``--update-results``: experiments/results/, which
docs/toyworld.md reads).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import add_output_args, write_results  # noqa: E402

SETTINGS = {  # name -> StreamConfig overrides
    "lcm_fixed": dict(steps=2),
    "lcm3_fixed": dict(steps=3),  # the stream's default number of steps
    "noise_fixed": dict(steps=2, inversion="noise"),
    "noise_fresh": dict(steps=2, inversion="noise", noise="fresh"),
    "builtin": None,  # configs/stream.py:builtin, what `jaxvid stream` uses with the built-in model
}


def change_errors(out: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(RMS change where the ground truth is still, RMS change error where it moves)."""
    d_out = np.diff(out.astype(np.float64), axis=0)
    d_gt = np.diff(target.astype(np.float64), axis=0)
    still = np.broadcast_to(np.all(d_gt == 0, axis=-1, keepdims=True), d_gt.shape)
    return float(np.sqrt(np.mean(d_out[still] ** 2))), float(np.sqrt(np.mean((d_out - d_gt)[~still] ** 2)))


def measure(setting: str, method: str, outs, edits, toy_metrics) -> dict:
    """One table row: the measures averaged over the clips."""
    per = []
    for out, e in zip(outs, edits, strict=True):
        r = toy_metrics(np.asarray(out), e)
        still, moving = change_errors(np.asarray(out), e.target)
        per.append([r["temporal_psnr"], still, moving, r["attr_acc"], r.get("psnr_in", float("nan"))])
    mean = [round(float(v), 3) for v in np.mean(per, axis=0)]
    row = dict(setting=setting, method=method, temporal_psnr=mean[0], still_rms=mean[1], moving_rms=mean[2],
               attr_acc=mean[3], psnr_in=mean[4])
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", nargs="*", default=[], help="exported memory folders to compare")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--identity", action="store_true", help="also stream with the source caption (twice the time)")
    add_output_args(ap)
    args = ap.parse_args()

    from configs.stream import BUILTIN
    from jaxvid.data.toyworld import ToyWorld
    from jaxvid.evaluation.datasets import EvalItem
    from jaxvid.evaluation.methods import build
    from jaxvid.metrics.toyworld import psnr, toy_metrics
    from jaxvid.pipelines.default import default_bundle, default_model_dir
    from jaxvid.pipelines.svdiff import StreamConfig

    model = default_bundle()
    methods = ["svdiff-zero", "svdiff", *(f"svdiff@{m}" for m in args.memories)]
    edits = [ToyWorld(7, size=64).edit(i, "background_color", frames=24) for i in range(2, 8)]
    rows = [measure("none", "source (unedited)", [e.source for e in edits], edits, toy_metrics)]
    for setting in args.settings:
        stream = dataclasses.replace(StreamConfig(), **(SETTINGS[setting] or BUILTIN))
        for name in methods:
            m = build(name, model, model_dir=default_model_dir(), edit_config=None, stream_config=stream)
            outs = [m.run(EvalItem(str(i), e.source, e.source_caption, e.target_caption, e.kind, e))[0]
                    for i, e in enumerate(edits)]
            rows.append(measure(setting, name, outs, edits, toy_metrics))
            if args.identity:
                same = [m.run(EvalItem(str(i), e.source, e.source_caption, e.source_caption, e.kind, e))[0]
                        for i, e in enumerate(edits)]
                rows[-1]["identity_psnr"] = round(float(np.mean([psnr(np.asarray(o), e.source)
                                                                 for o, e in zip(same, edits, strict=True)])), 3)
                print({"identity_psnr": rows[-1]["identity_psnr"]}, flush=True)
    name = "toyworld_memory" + ("" if args.settings == list(SETTINGS) else "_" + "_".join(args.settings))
    print(f"wrote {write_results(name, {'rows': rows}, args.update_results)}")


if __name__ == "__main__":
    main()
