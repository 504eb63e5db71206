"""``jaxvid info``: the components of a model, their parameter counts and dtypes."""

from __future__ import annotations

import argparse

import numpy as np

from jaxvid.cli.common import HelpFormatter, describe, add_model_args, console, load_bundle, model_spec


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="print the components and parameter counts of a model",
                       description=describe(__doc__, ""), formatter_class=HelpFormatter)
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxvid.weights.convert import param_paths

    spec = model_spec(args)
    bundle = load_bundle(args)
    for name in ("unet", "vae", "text_encoder"):
        m = getattr(bundle, name)
        params = param_paths(m)
        n = sum(int(np.prod(v.shape)) for v in params.values())
        dtypes = sorted({str(v.dtype) for v in params.values()})
        console.print(f"{name:13s} {type(m).__name__:22s} {n:>13,d} params  {','.join(dtypes)}")
    console.print(f"frame sides: multiples of {spec.pixel_multiple} px; default size {spec.default_size} px; "
                  f"prompts up to {spec.max_tokens - 2} tokens")
    return 0
