"""``jaxvid train``: a resumable training run of any task (``config.task``): SVDiff's temporal
modules on a frozen base model, or one stage of the toy-world model (vae, t2i, lcm)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxvid.cli.common import HelpFormatter, console, describe

EXAMPLES = """examples:
  jaxvid train --config configs/svdiff_train.py:tiny --workdir runs/tiny
  jaxvid train --config configs/svdiff_train.py --workdir runs/sd15 --config.model.path=./stable-diffusion-v1-5 \\
      --config.data.path=./videos --config.mesh.data=8
  (run the same command again to resume from the last checkpoint)
"""


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train SVDiff's memory (or a baseline), or a toy-world model stage",
                       description=describe(__doc__, EXAMPLES), formatter_class=HelpFormatter)
    t.add_argument("--config", required=True, help="config file and argument, e.g. configs/svdiff_train.py:tiny")
    t.add_argument("--workdir", type=Path, required=True, help="checkpoints, metrics, samples and the exported modules")
    t.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    t.set_defaults(func=run, accepts_config_overrides=True)


def run(args: argparse.Namespace) -> int:
    from jaxvid.overrides import apply_overrides, load_config
    from jaxvid.training.loop import NonFiniteError, apply_xla_flags, train

    config = apply_overrides(load_config(args.config), args.config_overrides)
    if args.print_config:
        print(config)
        return 0
    apply_xla_flags(config)
    try:
        out = train(config, args.workdir)
    except NonFiniteError as e:
        console.print(f"[red]error:[/] {e}")
        return 3
    console.print(f"exported the trained result to {out}")
    return 0
