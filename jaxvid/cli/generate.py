"""``jaxvid generate``: text-to-image / image-to-image with LCM (the whole stack in one command)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from jaxvid.cli.common import (HelpFormatter, describe, add_model_args, check_prompts, check_size, console, load_bundle,
                               model_spec, positive_float, positive_int, size)

EXAMPLES = """examples:
  jaxvid generate --prompt "a red circle moving on a blue background" -o outputs/demo.png
  jaxvid generate --model ./stable-diffusion-v1-5 --lora ./lcm-lora-sdv1-5 --prompt "a fox" --steps 4 -o fox.png
  jaxvid generate --model ./sd15 --lora ./lcm-lora-sdv1-5 --image in.png --strength 0.5 --prompt "..." -o out.png
"""


def add_parser(sub) -> None:
    from configs.image import get_config

    d = get_config()
    g = sub.add_parser("generate", help="text-to-image / image-to-image with LCM (whole-stack check)",
                       description=describe(__doc__, EXAMPLES), formatter_class=HelpFormatter)
    add_model_args(g)
    g.add_argument("--prompt", default=d.prompt, help="what to draw")
    g.add_argument("--negative-prompt", default=d.negative_prompt, help="what to steer away from (with guidance > 1)")
    g.add_argument("--image", type=Path, help="input image: image-to-image instead of text-to-image")
    g.add_argument("--strength", type=positive_float, default=d.strength,
                   help="image-to-image: share of the schedule re-run (0, 1]")
    g.add_argument("--steps", type=positive_int, default=d.steps, help="LCM steps")
    g.add_argument("--guidance", type=positive_float, default=d.guidance_scale,
                   help="guidance scale (1 = no classifier-free guidance)")
    g.add_argument("--size", type=size, help="N or HxW pixels (default: the model's sample size)")
    g.add_argument("--seed", type=int, default=d.seed, help="random seed")
    g.add_argument("--num-images", type=positive_int, default=1, help="images side by side in the output")
    g.add_argument("-o", "--output", type=Path, default=Path("outputs/generate.png"), help="output PNG")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from configs.image import get_config
    from jaxvid.pipelines.image import ImagePipeline

    spec = model_spec(args)
    check_prompts(spec, {"prompt": args.prompt}, [args.negative_prompt])
    if args.strength > 1:
        raise ValueError(f"--strength must be in (0, 1], got {args.strength}")
    if args.size:
        check_size(spec, *args.size)
    image = None
    if args.image is not None:
        if not args.image.exists():
            raise FileNotFoundError(f"input image not found: {args.image}")
        try:
            image = Image.open(args.image).convert("RGB")
        except OSError as e:
            raise ValueError(f"cannot read image {args.image}: {e}") from None
        if args.size:
            image = image.resize(args.size[::-1], Image.BICUBIC)
        check_size(spec, image.height, image.width)

    bundle = load_bundle(args)
    pipe = ImagePipeline(bundle, original_inference_steps=get_config().original_inference_steps)
    prompts = [args.prompt] * args.num_images
    kw = dict(negative_prompt=args.negative_prompt, steps=args.steps, guidance_scale=args.guidance, seed=args.seed)
    t0 = time.perf_counter()
    with console.status(f"sampling {args.steps} LCM steps (a first run compiles)"):
        if image is not None:
            out = pipe.img2img(np.asarray(image)[None].repeat(args.num_images, 0), prompts, strength=args.strength, **kw)
        else:
            h, w = args.size or (None, None)
            out = pipe.txt2img(prompts, height=h, width=w, **kw)
    console.print(f"sampled {len(out)} image(s) {out.shape[1]}x{out.shape[2]} in {time.perf_counter() - t0:.2f}s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(out), axis=1)).save(args.output)
    console.print(f"wrote {args.output}")
    return 0
