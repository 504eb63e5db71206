"""The ``jaxvid`` command. Thin: each subcommand parses its arguments, checks them (and opens
its inputs) before loading any model, and calls library functions.

    jaxvid demo
    jaxvid generate --prompt "a red circle moving on a blue background" -o outputs/generate.png
    jaxvid edit in.mp4 --source-prompt "a red circle" --target-prompt "a blue circle" -o out.mp4
    jaxvid stream in.mp4 --prompt "a blue circle" -o stream.mp4
    jaxvid train --config configs/svdiff_train.py:tiny --workdir runs/tiny
    jaxvid info --model ./stable-diffusion-v1-5
"""

from __future__ import annotations

import argparse

from jaxvid.cli import demo, edit, evaluate, generate, info, stream, train
from jaxvid.cli.common import HelpFormatter, console, enable_compilation_cache

SUBCOMMANDS = (demo, generate, edit, stream, train, evaluate, info)


def build_parser() -> argparse.ArgumentParser:
    import jaxvid

    parser = argparse.ArgumentParser(prog="jaxvid", description="Text-guided video editing with latent diffusion "
                                     "in JAX (FastVideoEdit, SVDiff).", formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"jaxvid {jaxvid.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def parse(argv: list[str] | None):
    """Arguments; ``--config.key=value`` items (``jaxvid train``) become ``args.config_overrides``."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    overrides = [a[len("--config."):] for a in extra if a.startswith("--config.")]
    unknown = [a for a in extra if not a.startswith("--config.")]
    if unknown or (overrides and not getattr(args, "accepts_config_overrides", False)):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    args.config_overrides = overrides
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    enable_compilation_cache()
    from jaxvid.weights.errors import WeightsError

    try:
        return args.func(args)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    except (FileNotFoundError, ValueError, NotImplementedError, TypeError, WeightsError) as e:
        console.print(f"[red]error:[/] {e}")
        return 2
