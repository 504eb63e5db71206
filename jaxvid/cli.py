"""The ``jaxvid`` command. Thin: parses arguments and calls library functions.

    jaxvid generate --prompt "a red circle moving on a blue background" -o outputs/demo.png
    jaxvid edit in.mp4 --source-prompt "a red car" --target-prompt "a blue car" -o out.mp4
    ffmpeg -i cam.mp4 -f rawvideo -pix_fmt rgb24 - | jaxvid stream --input - --input-size 480x640 --prompt "..." -o o.mp4
    jaxvid generate --model ./stable-diffusion-v1-5 --lora ./lcm-lora-sdv1-5 --prompt "..." -o out.png
    jaxvid info --model ./stable-diffusion-v1-5
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from pathlib import Path

from rich.console import Console

console = Console(stderr=True)


def _dtype(name: str):
    import jax.numpy as jnp

    return {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16,
            "float16": jnp.float16, "fp16": jnp.float16}[name]


def _size(text: str) -> tuple[int, int]:
    try:
        if "x" in text:
            h, w = text.lower().split("x")
            return int(h), int(w)
        return int(text), int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None


def load_bundle(args: argparse.Namespace):
    """The model bundle named by ``--model`` (+ ``--lora``), or the built-in default."""
    from jaxvid.pipelines.bundle import load_pipeline
    from jaxvid.pipelines.default import DEFAULT_MODEL_NOTE, random_bundle
    from jaxvid.weights.lora import load_lora

    t0 = time.perf_counter()
    with console.status("loading model"):
        if args.model is None:
            console.print(f"[yellow]note:[/] {DEFAULT_MODEL_NOTE}")
            bundle = random_bundle("tiny")
        else:
            dt = _dtype(args.dtype)
            bundle = load_pipeline(args.model, dtype=dt, param_dtype=dt, attention_kernel=args.attention)
        if args.lora:
            load_lora(bundle.unet, args.lora, scale=args.lora_scale)
    console.print(f"loaded {bundle.source} in {time.perf_counter() - t0:.1f}s")
    return bundle


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, help="diffusers Stable Diffusion/LCM folder (default: built-in tiny model)")
    p.add_argument("--lora", type=Path, help="LoRA file or folder to fuse (e.g. LCM-LoRA)")
    p.add_argument("--lora-scale", type=float, default=1.0)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--attention", default="xla", choices=["xla", "cudnn"], help="attention kernel")


def cmd_generate(args: argparse.Namespace) -> int:
    from PIL import Image

    from configs.image import get_config
    from jaxvid.pipelines.image import ImagePipeline

    cfg = get_config()
    bundle = load_bundle(args)
    pipe = ImagePipeline(bundle, original_inference_steps=cfg.original_inference_steps)
    prompts = [args.prompt] * args.num_images
    kw = dict(negative_prompt=args.negative_prompt, steps=args.steps, guidance_scale=args.guidance, seed=args.seed)
    t0 = time.perf_counter()
    with console.status(f"sampling {args.steps} LCM steps (first call compiles)"):
        if args.image is not None:
            img = Image.open(args.image).convert("RGB")
            if args.size:
                img = img.resize(args.size[::-1], Image.BICUBIC)
            arr = np.asarray(img)[None].repeat(args.num_images, 0)
            out = pipe.img2img(arr, prompts, strength=args.strength, **kw)
        else:
            h, w = args.size or (None, None)
            out = pipe.txt2img(prompts, height=h, width=w, **kw)
    console.print(f"sampled {len(out)} image(s) {out.shape[1]}x{out.shape[2]} in {time.perf_counter() - t0:.2f}s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(list(out), axis=1)).save(args.output)
    console.print(f"wrote {args.output}")
    return 0


def cmd_edit(args: argparse.Namespace) -> int:
    import dataclasses

    from tqdm import tqdm

    from configs.edit import get_config
    from jaxvid.data.video import read_video, video_fps, write_strip, write_video
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    cfg = get_config(args.preset + ("" if args.model else ",tiny"))
    overrides = {k: v for k, v in dict(steps=args.steps, seed=args.seed, target_guidance=args.guidance,
                                       negative_prompt=args.negative_prompt).items() if v is not None}
    if args.no_tokenflow:
        overrides["tokenflow"] = False
    if args.per_frame_noise:
        overrides["shared_noise"] = False
    edit_cfg = dataclasses.replace(FastVideoEditConfig(**cfg.edit.to_dict()), **overrides)
    height, width = args.size or (cfg.size, cfg.size)
    frames = read_video(args.input, height=height, width=width, max_frames=args.frames or cfg.frames, stride=args.stride)
    console.print(f"read {len(frames)} frames {height}x{width} from {args.input} "
                  f"(resized to cover, center-cropped)")
    bundle = load_bundle(args)
    editor = FastVideoEditor(bundle, edit_cfg)
    with tqdm(total=edit_cfg.steps, desc="editing (first run compiles)", unit="step") as bar:
        result = editor.edit(frames, args.source_prompt, args.target_prompt, blend_words=args.blend_words,
                             progress=lambda i: bar.update(1))
    t = result.timings
    console.print(f"timing: encode {t['encode_s']:.2f}s | sampling {t['sampling_s']:.2f}s | decode {t['decode_s']:.2f}s "
                  f"({len(frames)} frames, {edit_cfg.steps} steps)")
    out = write_video(args.output, result.frames, fps=video_fps(args.input))
    strip = write_strip(args.output.with_suffix(".strip.png"), [frames, result.frames])
    console.print(f"wrote {out} and {strip} (top: source, bottom: edited)")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxvid.data.stream import ThreadedSource, open_source
    from jaxvid.data.video import VideoWriter, video_fps
    from jaxvid.models.temporal import TemporalConfig, temporal_unet
    from jaxvid.pipelines.svdiff import StreamConfig, StreamEditor
    from jaxvid.weights.loaders import load_tiny_vae
    from jaxvid.weights.temporal import load_temporal, read_temporal_config

    height, width = args.size or ((512, 512) if args.model else (128, 128))
    source = open_source(args.input, height, width, args.input_size)
    bundle = load_bundle(args)
    if args.tiny_vae:
        bundle = bundle.replace(vae=load_tiny_vae(args.tiny_vae))
    tcfg = read_temporal_config(args.memory) if args.memory else TemporalConfig(kind=args.temporal)
    model = temporal_unet(bundle.unet, tcfg, seed=args.seed)
    if args.memory:
        load_temporal(model, args.memory)
    else:
        console.print(f"[yellow]note:[/] no --memory given: the {tcfg.kind} modules are untrained "
                      "(zero-initialised output: frames are edited independently)")
    cfg = StreamConfig(steps=args.steps, guidance=args.guidance, inversion=args.inversion, strength=args.strength,
                       source_prompt=args.source_prompt, seed=args.seed, guidance_mode=args.guidance_mode,
                       stream_batch=args.stream_batch)
    editor = StreamEditor(bundle, model, args.prompt, cfg, height=height, width=width)
    state = editor.init_state()
    fps_in = video_fps(args.input) if args.input not in ("-",) and not args.input.startswith("/dev/") else 30.0
    reader = ThreadedSource(source, args.policy)
    n, t_start = 0, None
    bar = tqdm(desc="streaming (first frame compiles)", unit="frame")
    try:
        with VideoWriter(args.output, fps=fps_in) as writer:
            try:
                arrivals: list[float] = []
                for frame, arrived in reader:
                    out, ok, state = editor.step(state, frame)
                    out = np.asarray(out)  # waits for the device
                    arrivals.append(arrived)
                    if not bool(ok):  # stream batch still filling
                        continue
                    writer.write(out)
                    arrived = arrivals.pop(0)
                    now = time.perf_counter()
                    t_start = t_start or now
                    n += 1
                    if args.max_frames and n >= args.max_frames:
                        break
                    fps = (n - 1) / (now - t_start) if n > 1 else 0.0
                    bar.set_postfix(fps=f"{fps:.1f}", latency_ms=f"{(now - arrived) * 1e3:.0f}", dropped=reader.dropped)
                    bar.update(1)
                for _ in range(len(arrivals)):  # stream batch: flush the frames still in flight
                    out, ok, state = editor.step(state, frame)
                    if bool(ok):
                        writer.write(np.asarray(out))
                        n += 1
            except KeyboardInterrupt:
                console.print("[yellow]interrupted: closing the output[/]")
    finally:
        reader.close()
        bar.close()
    console.print(f"wrote {n} frames to {args.output} ({reader.dropped} dropped by the '{args.policy}' policy)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from jaxvid.weights.convert import param_paths

    bundle = load_bundle(args)
    for name in ("unet", "vae", "text_encoder"):
        m = getattr(bundle, name)
        params = param_paths(m)
        n = sum(int(np.prod(v.shape)) for v in params.values())
        dtypes = sorted({str(v.dtype) for v in params.values()})
        console.print(f"{name:13s} {type(m).__name__:22s} {n:>13,d} params  {','.join(dtypes)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from configs.image import get_config

    d = get_config()
    parser = argparse.ArgumentParser(prog="jaxvid", description="Text-guided video editing with latent diffusion in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="text-to-image / image-to-image with LCM (whole-stack smoke test)")
    _add_model_args(g)
    g.add_argument("--prompt", default=d.prompt)
    g.add_argument("--negative-prompt", default=d.negative_prompt)
    g.add_argument("--image", type=Path, help="input image for img2img")
    g.add_argument("--strength", type=float, default=d.strength, help="img2img: share of the schedule re-run")
    g.add_argument("--steps", type=int, default=d.steps)
    g.add_argument("--guidance", type=float, default=d.guidance_scale)
    g.add_argument("--size", type=_size, help="N or HxW pixels (default: the model's sample size)")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--num-images", type=int, default=1)
    g.add_argument("-o", "--output", type=Path, default=Path("outputs/generate.png"))
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("edit", help="FastVideoEdit: edit a whole clip with a source and a target prompt")
    _add_model_args(e)
    e.add_argument("input", type=Path, help="video file (mp4, webm, gif, ...) or folder of frames")
    e.add_argument("--source-prompt", required=True, help="describes the input video")
    e.add_argument("--target-prompt", required=True, help="the same description, edited")
    e.add_argument("--preset", default="attribute", choices=["attribute", "object", "background", "style"])
    e.add_argument("--blend-words", nargs="+", help="target words that define the edited region (default: new words)")
    e.add_argument("--negative-prompt")
    e.add_argument("--frames", type=int, help="number of frames to edit (default: preset's, 32)")
    e.add_argument("--stride", type=int, default=1, help="take every N-th input frame")
    e.add_argument("--size", type=_size, help="N or HxW pixels (default 512; 128 on the built-in model)")
    e.add_argument("--steps", type=int)
    e.add_argument("--guidance", type=float, help="target guidance scale")
    e.add_argument("--seed", type=int)
    e.add_argument("--no-tokenflow", action="store_true", help="edit chunks independently, no propagation")
    e.add_argument("--per-frame-noise", action="store_true", help="the released code's per-frame noise")
    e.add_argument("-o", "--output", type=Path, default=Path("outputs/edit.mp4"))
    e.set_defaults(func=cmd_edit)

    st = sub.add_parser("stream", help="SVDiff: edit a live stream frame by frame with a temporal memory")
    _add_model_args(st)
    st.add_argument("--input", required=True, help="video file, '-' for raw RGB24 frames on stdin, or /dev/videoN")
    st.add_argument("--input-size", type=_size, help="HxW of raw stdin frames")
    st.add_argument("--prompt", required=True)
    st.add_argument("--source-prompt", default="", help="prompt for inversion / the consistency source branch")
    st.add_argument("--memory", type=Path, help="trained temporal-module folder (save_temporal); default: untrained")
    st.add_argument("--temporal", default="memory", choices=["memory", "window", "shift", "sliding", "linear"])
    st.add_argument("--inversion", default="lcm", choices=["lcm", "noise", "consistency"])
    st.add_argument("--steps", type=int, default=3)
    st.add_argument("--guidance", type=float, default=1.0, help="lambda: (1+l) eps_c - l eps_uc; 0 = no CFG")
    st.add_argument("--strength", type=float, default=0.6, help="noise mode: share of the schedule re-run")
    st.add_argument("--guidance-mode", default="cfg", choices=["cfg", "rcfg"],
                    help="rcfg: residual CFG, no unconditional UNet branch")
    st.add_argument("--stream-batch", action="store_true", help="all denoising steps of successive frames in one "
                    "UNet call (output delayed by steps-1 frames)")
    st.add_argument("--tiny-vae", type=Path, help="AutoencoderTiny (TAESD) folder for fast encode/decode")
    st.add_argument("--size", type=_size, help="N or HxW (default 512; 128 on the built-in model)")
    st.add_argument("--policy", default="queue", choices=["queue", "drop"], help="input faster than processing")
    st.add_argument("--max-frames", type=int)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("-o", "--output", type=Path, default=Path("outputs/stream.mp4"))
    st.set_defaults(func=cmd_stream)

    i = sub.add_parser("info", help="print the components and parameter counts of a model")
    _add_model_args(i)
    i.set_defaults(func=cmd_info)
    return parser


def enable_compilation_cache() -> None:
    """Persist XLA compilations across runs (``$JAXVID_CACHE`` or ``~/.cache/jaxvid/xla``): the
    second run of a command skips model-init and sampler compiles."""
    import os

    import jax

    path = os.environ.get("JAXVID_CACHE", os.path.expanduser("~/.cache/jaxvid/xla"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_compilation_cache()
    try:
        return args.func(args)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        return 130
    except (FileNotFoundError, ValueError, NotImplementedError, TypeError) as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    except Exception as e:
        from jaxvid.weights.errors import WeightsError

        if isinstance(e, WeightsError):
            console.print(f"[red]error:[/] {e}")
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
