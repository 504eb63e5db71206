"""Pieces every subcommand shares: argument types that refuse nonsense numbers, the model
arguments, ``--set`` overrides, the input argument, checks that run before any model loads,
model loading with a status line, and the persistent compilation cache."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)  # no hard line breaks in logs and pipes


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends each option's default to its help (unless the help already states it, or there
    is none to state); keeps the examples in descriptions as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS):
            return text
        return f"{text} (default: {action.default})"


def describe(doc: str, examples: str) -> str:
    """A subcommand's description: its module docstring without reST markup, then examples."""
    return doc.replace("``", "") + "\n" + examples


def _number(kind, lo: float, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (value == lo and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, 1, True, "an integer >= 1")
nonneg_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a number > 0")
nonneg_float = _number(float, 0.0, True, "a number >= 0")


def size(text: str) -> tuple[int, int]:
    """``N`` or ``HxW`` pixels, both positive."""
    try:
        h, w = (int(v) for v in text.lower().split("x")) if "x" in text.lower() else (int(text), int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be N or HxW, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def add_model_args(p: argparse.ArgumentParser) -> None:
    from jaxvid.models.attention import attention_kernel_names

    g = p.add_argument_group("model")
    g.add_argument("--model", type=Path, help="diffusers Stable Diffusion / LCM folder (default: the built-in model)")
    g.add_argument("--lora", type=Path, help="LoRA file or folder to fuse into the UNet (e.g. LCM-LoRA)")
    g.add_argument("--lora-scale", type=nonneg_float, default=1.0, help="scale of the fused LoRA")
    g.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="compute and storage dtype of the networks (bfloat16 on GPUs)")
    g.add_argument("--attention", default="auto", choices=attention_kernel_names(), help="attention kernel")


def add_set_arg(p: argparse.ArgumentParser, example: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override any key of the run config (repeatable), e.g. {example}")


def add_input_args(p: argparse.ArgumentParser, what: str) -> None:
    """The input video, given either as the positional argument or as ``-i/--input``."""
    p.add_argument("input", nargs="?", help=f"{what} (or give it with -i/--input)")
    p.add_argument("-i", "--input", dest="input_opt", metavar="INPUT", help="same as the positional input")


def resolve_input(args: argparse.Namespace) -> str:
    if args.input and args.input_opt and args.input != args.input_opt:
        raise ValueError(f"two different inputs given: {args.input!r} and --input {args.input_opt!r}")
    value = args.input or args.input_opt
    if not value:
        raise ValueError("no input given (positional INPUT or -i/--input)")
    return value


def model_spec(args: argparse.Namespace):
    """What the chosen model allows (sizes, prompt window, tokenizer), read without weights."""
    from jaxvid.pipelines.bundle import model_spec as folder_spec
    from jaxvid.pipelines.default import default_spec

    if args.lora is not None and not args.lora.exists():
        raise FileNotFoundError(f"LoRA not found: {args.lora}")
    return default_spec() if args.model is None else folder_spec(args.model)


def check_size(spec, height: int, width: int) -> None:
    f = spec.pixel_multiple
    if height % f or width % f:
        raise ValueError(f"frame size {height}x{width} must be a multiple of {f} for this model")


def check_prompts(spec, required: dict[str, str], optional: Sequence[str] = ()) -> None:
    """Non-empty required prompts, and every prompt within the model's token window."""
    from jaxvid.text import check_prompts as check_length

    for name, text in required.items():
        if not text or not text.strip():
            raise ValueError(f"the {name} is empty")
    check_length(spec.tokenizer, [*required.values(), *optional], max_length=spec.max_tokens)


def load_bundle(args: argparse.Namespace):
    """The model bundle named by ``--model`` (+ ``--lora``), or the built-in default."""
    import jax.numpy as jnp

    from jaxvid.pipelines.bundle import load_pipeline
    from jaxvid.pipelines.default import DEFAULT_MODEL_NOTE, default_bundle
    from jaxvid.weights.lora import load_lora

    dt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}[args.dtype]
    t0 = time.perf_counter()
    with console.status("loading model"):
        if args.model is None:
            console.print(f"[yellow]note:[/] {DEFAULT_MODEL_NOTE}")
            bundle = default_bundle(dtype=dt, attention_kernel=args.attention)
        else:
            bundle = load_pipeline(args.model, dtype=dt, param_dtype=dt, attention_kernel=args.attention)
        if args.lora:
            load_lora(bundle.unet, args.lora, scale=args.lora_scale)
    console.print(f"loaded {bundle.source} in {time.perf_counter() - t0:.1f}s")
    return bundle


def output_fps(requested: float | None, source_fps: float | None, default: float) -> float:
    """``--fps`` if given, else the source's rate, else ``default`` (said aloud, never silent)."""
    if requested is not None:
        return requested
    if source_fps:
        return source_fps
    console.print(f"[yellow]note:[/] the input has no frame rate; writing at {default:g} fps (set --fps)")
    return default


def enable_compilation_cache() -> None:
    """Persist XLA compilations across runs, so a repeat run compiles nothing. The folder is
    ``$JAX_COMPILATION_CACHE_DIR``, else ``$JAXVID_CACHE``, else ``~/.cache/jaxvid/xla``."""
    import jax

    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.environ.get(
        "JAXVID_CACHE", os.path.expanduser("~/.cache/jaxvid/xla")
    )
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
