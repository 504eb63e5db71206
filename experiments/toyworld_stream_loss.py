"""How far is the toy stream's output from the ground-truth edit, with and without a memory?
The held-out value of the ``lcm_stream`` objective (the stream itself, unrolled: LCM inversion,
every LCM step under CFG, MSE of each step's denoised latent to the edited frame's latent) per
edit kind, next to the same error for the *unedited source* used as the output — a memory that
only reproduced the source would score that.

    python experiments/toyworld_stream_loss.py --memories runs/toyworld/memory-stream/export

Held-out edit pairs: ``ToyWorld(seed=123)``, 16 frames in clips of 4, two batches of two videos
per kind; the stream's defaults as trained (2 LCM steps, guidance 1, LCM inversion; all settable:
``--inversion consistency --guidance 6`` is the built-in model's stream). Writes
``outputs/bench/toyworld_stream_loss_k<steps>_g<guidance>[_consistency].json``
(``--update-results``: experiments/results/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments.common import add_output_args, write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--memories", nargs="*", default=[], help="exported memory folders (besides the shipped one)")
    ap.add_argument("--lcm-steps", type=int, default=2, help="the stream's LCM steps")
    ap.add_argument("--guidance", type=float, default=1.0, help="the stream's CFG lambda (0: no CFG)")
    ap.add_argument("--inversion", default="lcm", choices=("lcm", "consistency"), help="the stream's inversion mode")
    add_output_args(ap)
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from jaxvid.data.toyworld import EDIT_KINDS, ToyEdits, ToyWorld
    from jaxvid.models.temporal import temporal_unet
    from jaxvid.pipelines.autoencode import encode_latents
    from jaxvid.pipelines.default import default_bundle, default_temporal
    from jaxvid.text import tokenize
    from jaxvid.training.tasks.svdiff import ObjectiveConfig, SVDiffTask
    from jaxvid.weights.temporal import load_temporal, read_temporal_config

    model = default_bundle()
    folders = {"shipped": str(default_temporal("memory")), **{m: m for m in args.memories}}
    objective = ObjectiveConfig(clip_frames=4, caption_dropout=0.0, noising="lcm_stream", lcm_steps=args.lcm_steps,
                                loss_space="x0", guidance=args.guidance, inversion=args.inversion)
    runs = {}  # name -> (the objective of that memory's layout, its parameters): folders may differ in layout
    for name, folder in folders.items():
        tcfg = read_temporal_config(folder)
        task = SVDiffTask(model, temporal=tcfg, objective=objective)
        loss = jax.jit(lambda p, b, k, t=task: t.loss_and_grads(p, t.frozen, b, k)[0])
        if name == "shipped":  # the zero memory: the shipped layout with its output projections at zero
            runs["zero"] = (loss, task.init_params(jax.random.key_data(jax.random.key(0))))
        runs[name] = (loss, nnx.state(load_temporal(temporal_unet(model.unet, tcfg), folder).temporal).to_pure_dict())
    frames = lambda v: v.reshape(-1, *v.shape[2:])  # noqa: E731
    latent = jax.jit(lambda v: encode_latents(model.vae, v.astype(jnp.float32) / 127.5 - 1.0))
    rows = []
    for kind in EDIT_KINDS:
        edits = ToyEdits(ToyWorld(123, frames=16, size=64), kinds=(kind,))
        vals: dict[str, list[float]] = {name: [] for name in [*runs, "source as output"]}
        for i in (0, 2):
            items = [edits[i], edits[i + 1]]
            batch = {k: jnp.asarray(np.stack([x[k] for x in items])) for k in ("video", "edited")}
            batch["ids"] = jnp.asarray(np.stack([tokenize(model.tokenizer, x["caption"], max_length=77)[0]
                                                 for x in items]))
            for name, (loss, params) in runs.items():
                vals[name].append(float(loss(params, batch, jax.random.key(i))))
            vals["source as output"].append(float(jnp.mean((latent(frames(batch["video"])) -
                                                            latent(frames(batch["edited"]))) ** 2)))
        row = {"kind": kind, **{name: round(float(np.mean(v)), 4) for name, v in vals.items()}}
        print(row, flush=True)
        rows.append(row)
    name = f"toyworld_stream_loss_k{args.lcm_steps}_g{args.guidance:g}" + ("" if args.inversion == "lcm" else
                                                                           f"_{args.inversion}")
    print(f"wrote {write_results(name, {'rows': rows}, args.update_results)}")


if __name__ == "__main__":
    main()
