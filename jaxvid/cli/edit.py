"""``jaxvid edit``: FastVideoEdit — edit a whole clip from a source and a target prompt."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxvid.cli.common import (HelpFormatter, describe, add_input_args, add_model_args, add_set_arg, check_prompts, check_size,
                               console, load_bundle, model_spec, nonneg_float, output_fps, positive_float,
                               positive_int, resolve_input, size)

EXAMPLES = """examples:
  jaxvid edit in.mp4 --source-prompt "a red circle" --target-prompt "a blue circle" -o out.mp4
  jaxvid edit in.mp4 --model ./sd15 --lora ./lcm-lora-sdv1-5 --preset object \\
      --source-prompt "a cat on a sofa" --target-prompt "a dog on a sofa" --set edit.replace_scale=1.2 -o dog.mp4
config keys (--set): see configs/edit.py and FastVideoEditConfig in jaxvid/pipelines/fastvideoedit.py
"""


def add_parser(sub) -> None:
    from configs.edit import PRESETS

    e = sub.add_parser("edit", help="FastVideoEdit: edit a whole clip with a source and a target prompt",
                       description=describe(__doc__, EXAMPLES), formatter_class=HelpFormatter)
    add_model_args(e)
    add_input_args(e, "video file (mp4, webm, gif, ...) or folder of frames")
    e.add_argument("--source-prompt", required=True, help="describes the input video")
    e.add_argument("--target-prompt", required=True, help="the same description, edited")
    e.add_argument("--preset", default="attribute", choices=sorted(PRESETS), help="edit preset (configs/edit.py)")
    e.add_argument("--released", action="store_true", help="the authors' released code's behaviour and settings "
                   "(profile, per-frame noise, CFG pairs, negative prompt; see docs/fastvideoedit.md)")
    e.add_argument("--blend-words", nargs="+", help="target words that define the edited region (default: the "
                   "words the target adds)")
    e.add_argument("--change-words", nargs="+", help="source words of the region to change (the released "
                   "profile's blend mask)")
    e.add_argument("--negative-prompt", help="negative prompt of the guided branches (default: the config's)")
    e.add_argument("--frames", type=positive_int,
                   help="frames to edit (default: the preset's 32; 8 with the built-in model)")
    e.add_argument("--stride", type=positive_int, help="take every N-th input frame (default: 1)")
    e.add_argument("--size", type=size, help="N or HxW pixels (default: the model's size: 512 for SD1.5, 64 for "
                   "the built-in model)")
    e.add_argument("--steps", type=positive_int, help="LCM steps (default: the preset's 15; 4 with the built-in model)")
    e.add_argument("--guidance", type=nonneg_float, help="target guidance scale (default: the preset's 2)")
    e.add_argument("--seed", type=int, help="random seed (default: 0)")
    e.add_argument("--no-tokenflow", action="store_true", help="edit chunks independently, no propagation")
    e.add_argument("--per-frame-noise", action="store_true", help="the released code's per-frame noise")
    e.add_argument("--fps", type=positive_float, help="output frame rate (default: the input's / stride)")
    add_set_arg(e, "edit.self_fraction=0.7")
    e.add_argument("-o", "--output", type=Path, default=Path("outputs/edit.mp4"), help="output video")
    e.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The run config: preset, then the shortcut flags, then ``--set`` overrides."""
    from configs.edit import get_config
    from jaxvid.overrides import apply_overrides

    cfg = get_config(args.preset + ("" if args.model else ",builtin") + (",released" if args.released else ""))
    for flag, key in (("frames", "frames"), ("stride", "stride"), ("size", "size"), ("steps", "edit.steps"),
                      ("guidance", "edit.target_guidance"), ("seed", "edit.seed"),
                      ("negative_prompt", "edit.negative_prompt")):
        value = getattr(args, flag)
        if value is not None:
            apply_overrides(cfg, [f"{key}={value!r}"])
    for flag, key in (("blend_words", "edit.blend_words"), ("change_words", "edit.change_words")):
        if getattr(args, flag):
            apply_overrides(cfg, [f"{key}={tuple(getattr(args, flag))!r}"])
    if args.no_tokenflow:
        cfg.edit.tokenflow = False
    if args.per_frame_noise:
        cfg.edit.shared_noise = False
    return apply_overrides(cfg, args.set)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxvid.control.align import align_prompts
    from jaxvid.data.video import read_video, video_fps, write_strip, write_video
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    # everything that can be wrong is checked before any model is loaded
    source = resolve_input(args)
    spec = model_spec(args)
    cfg = build_config(args)
    edit_cfg = FastVideoEditConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.edit.to_dict().items()})
    if cfg.frames < 1 or cfg.stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got {cfg.frames} and {cfg.stride}")
    height, width = cfg.size or (spec.default_size, spec.default_size)
    check_size(spec, height, width)
    check_prompts(spec, {"source prompt": args.source_prompt, "target prompt": args.target_prompt},
                  [edit_cfg.negative_prompt])
    align_prompts(spec.tokenizer, args.source_prompt, args.target_prompt, blend_words=edit_cfg.blend_words or None,
                  change_words=edit_cfg.change_words or None, max_length=spec.max_tokens)
    if edit_cfg.blend_start_step is not None and edit_cfg.blend_start_step > edit_cfg.steps:
        console.print(f"[yellow]note:[/] blending starts at step {edit_cfg.blend_start_step} of {edit_cfg.steps}: "
                      "it never runs (lower edit.blend_start_step to blend)")
    frames = read_video(source, height=height, width=width, max_frames=cfg.frames, stride=cfg.stride)
    console.print(f"read {len(frames)} frames {height}x{width} from {source} (scaled to cover, center-cropped)")
    src_fps = video_fps(source)
    fps = output_fps(args.fps, src_fps / cfg.stride if src_fps else None, 8.0)

    bundle = load_bundle(args)
    editor = FastVideoEditor(bundle, edit_cfg)
    with tqdm(total=edit_cfg.steps, desc="editing", unit="step") as bar:
        result = editor.edit(frames, args.source_prompt, args.target_prompt, progress=lambda i: bar.update(1))
    t = result.timings
    console.print(f"timing: encode {t['encode_s']:.2f}s | sampling {t['sampling_s']:.2f}s | decode {t['decode_s']:.2f}s "
                  f"({len(frames)} frames, {edit_cfg.steps} steps; a first run includes compiling)")
    out = write_video(args.output, result.frames, fps=fps)
    strip = write_strip(args.output.with_suffix(".strip.png"), [frames, result.frames])
    console.print(f"wrote {out} and {strip} (top: source, bottom: edited)")
    return 0
