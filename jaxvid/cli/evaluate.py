"""``jaxvid eval``: edit every video of a dataset with every method and measure the results
(CLIP metrics with a local CLIP folder; ground-truth metrics on the toy world). Resumable: run it
again and finished videos are kept."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxvid.cli.common import (HelpFormatter, add_model_args, add_set_arg, console, describe, load_bundle, model_spec,
                               positive_int, size)

EXAMPLES = """examples:
  jaxvid eval --dataset toyworld:8:16 --methods fve fve-no_tokenflow svdiff svdiff-zero per_frame -o outputs/eval
  jaxvid eval --dataset tgve:./loveu-tgve-2023 --model ./sd15 --lora ./lcm-lora-sdv1-5 --clip ./clip-vit-large-patch14 \\
      --methods fve --max-frames 32 -o outputs/tgve
datasets: tgve:ROOT, prompts:ROOT, toyworld[:N[:FRAMES]] (layouts: docs/evaluation.md)
"""


def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="evaluate editing methods on a dataset (tables, plots, videos)",
                       description=describe(__doc__, EXAMPLES), formatter_class=HelpFormatter)
    add_model_args(e)
    e.add_argument("--dataset", required=True, help="tgve:ROOT, prompts:ROOT or toyworld[:N[:FRAMES]]")
    e.add_argument("--methods", nargs="+", default=["fve", "svdiff-zero", "per_frame"],
                   help="method names (jaxvid/evaluation/methods.py); 'list' prints those the model offers")
    e.add_argument("--clip", type=Path, help="local CLIP folder for Tem-Con / Txt-Sim / Clip-Acc")
    e.add_argument("--size", type=size, help="N or HxW frame size (default: the model's sample size)")
    e.add_argument("--max-frames", type=positive_int, help="frames per video (default: all)")
    e.add_argument("--preset", default="attribute", help="FastVideoEdit preset (configs/edit.py; ',builtin' is added for the built-in model)")
    add_set_arg(e, "edit.steps=8 or stream.steps=2")
    e.add_argument("-o", "--output", type=Path, default=Path("outputs/eval"), help="results folder")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from configs.edit import get_config as edit_config
    from configs.stream import get_config as stream_config
    from jaxvid.evaluation import methods as method_lib
    from jaxvid.evaluation.datasets import Dataset
    from jaxvid.evaluation.runner import run as run_eval
    from jaxvid.overrides import apply_overrides
    from jaxvid.pipelines.default import default_model_dir
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig
    from jaxvid.pipelines.svdiff import StreamConfig

    model_dir = args.model or default_model_dir()
    if args.methods == ["list"]:
        console.print(" ".join(method_lib.available(model_dir)))
        return 0
    spec = model_spec(args)
    h, w = args.size or (spec.default_size, spec.default_size)
    dataset = Dataset(args.dataset, size=(h, w), max_frames=args.max_frames)
    if args.clip is not None and not args.clip.is_dir():
        raise FileNotFoundError(f"CLIP folder not found: {args.clip}")
    cfg = edit_config(args.preset + ("" if args.model or "builtin" in args.preset else ",builtin"))
    cfg.stream = stream_config(None if args.model else "builtin").stream
    apply_overrides(cfg, args.set)
    edit_cfg = FastVideoEditConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.edit.to_dict().items()})
    stream_cfg = StreamConfig(**cfg.stream.to_dict())
    bundle = load_bundle(args)
    methods = [method_lib.build(n, bundle, model_dir=model_dir, edit_config=edit_cfg, stream_config=stream_cfg)
               for n in args.methods]
    scorer = None
    if args.clip is not None:
        from jaxvid.metrics.clip import ClipScorer

        scorer = ClipScorer(args.clip)
    rows = run_eval(dataset, methods, args.output, scorer=scorer)
    console.print((args.output / "summary.md").read_text())
    console.print(f"{len(rows)} results in {args.output} ({len(dataset.skipped)} dataset entries skipped)")
    return 0
