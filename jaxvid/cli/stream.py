"""``jaxvid stream``: SVDiff — edit a live stream frame by frame through a temporal memory."""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np

from jaxvid.cli.common import (HelpFormatter, describe, add_input_args, add_model_args, add_set_arg, check_prompts, check_size,
                               console, load_bundle, model_spec, nonneg_float, output_fps, positive_float,
                               positive_int, resolve_input, size)

EXAMPLES = """examples:
  jaxvid stream in.mp4 --prompt "a blue circle" -o stream.mp4
  jaxvid stream -i in.mp4 --model ./sd15 --lora ./lcm-lora-sdv1-5 --memory ./svdiff-memory --prompt "..." -o s.mp4
  ffmpeg -i cam.mp4 -f rawvideo -pix_fmt rgb24 - | jaxvid stream -i - --input-size 480x640 --fps 30 --prompt "..."
config keys (--set): see configs/stream.py, StreamConfig (jaxvid/pipelines/svdiff.py), TemporalConfig
"""


def add_parser(sub) -> None:
    from jaxvid.models.temporal import TEMPORAL_MODULES
    from jaxvid.pipelines.svdiff import GUIDANCE_MODES, MODES, NOISE_MODES

    st = sub.add_parser("stream", help="SVDiff: edit a live stream frame by frame with a temporal memory",
                        description=describe(__doc__, EXAMPLES), formatter_class=HelpFormatter)
    add_model_args(st)
    add_input_args(st, "video file, '-' for raw RGB24 frames on stdin, or /dev/videoN")
    st.add_argument("--input-size", type=size, help="HxW of raw frames on stdin")
    st.add_argument("--prompt", required=True, help="what the stream should look like")
    st.add_argument("--source-prompt", help="describes the input: inversion / consistency source branch "
                    "(default: empty)")
    st.add_argument("--negative-prompt", help="the unconditional branch's prompt under CFG (default: empty)")
    st.add_argument("--memory", type=Path, help="trained temporal-module folder (jaxvid train / save_temporal); "
                    "default: the built-in model's trained module, else untrained modules")
    st.add_argument("--temporal", choices=sorted(TEMPORAL_MODULES),
                    help="temporal module when no --memory is given (default: memory)")
    st.add_argument("--inversion", choices=MODES, help="how a frame reaches the first timestep (default: lcm; consistency with the built-in model)")
    st.add_argument("--steps", type=positive_int, help="LCM steps per frame (default: 3; 2 with the built-in model)")
    st.add_argument("--guidance", type=nonneg_float, help="lambda in (1+l) eps_c - l eps_uc; 0 = no CFG (default: 1; 6 with the built-in model)")
    st.add_argument("--strength", type=positive_float, help="noise mode: share of the schedule re-run (default: 0.6)")
    st.add_argument("--guidance-mode", choices=GUIDANCE_MODES, help="cfg: conditional + unconditional rows with "
                    "their own memories (the paper); rcfg: residual CFG, no unconditional row; embedding: a distilled "
                    "LCM's guidance embedding; auto: embedding on distilled LCMs, else cfg (default: auto)")
    st.add_argument("--noise", choices=NOISE_MODES, help="one fixed noise for all frames, or fresh noise every "
                    "frame (default: fixed: steadier, measured in docs/svdiff.md)")
    st.add_argument("--stream-batch", action="store_true", help="all denoising steps of successive frames in one "
                    "UNet call (output delayed by steps-1 frames)")
    st.add_argument("--tiny-vae", type=Path, help="AutoencoderTiny (TAESD) folder for fast encode/decode")
    st.add_argument("--size", type=size, help="N or HxW pixels (default: the model's size: 512 for SD1.5, 64 for the built-in model)")
    st.add_argument("--policy", choices=["queue", "drop"], help="input faster than processing: keep every frame "
                    "or only the newest (default: queue)")
    st.add_argument("--max-frames", type=positive_int, help="stop after writing this many frames")
    st.add_argument("--seed", type=int, help="random seed (default: 0)")
    st.add_argument("--fps", type=positive_float, help="output frame rate (default: the input's; 30 without one)")
    add_set_arg(st, "stream.guidance=1.5")
    st.add_argument("-o", "--output", type=Path, default=Path("outputs/stream.mp4"), help="output video")
    st.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """The run config: defaults, then the shortcut flags, then ``--set`` overrides."""
    from configs.stream import get_config
    from jaxvid.overrides import apply_overrides

    cfg = get_config(None if args.model else "builtin")
    for flag, key in (("size", "size"), ("policy", "policy"), ("steps", "stream.steps"),
                      ("guidance", "stream.guidance"), ("inversion", "stream.inversion"),
                      ("strength", "stream.strength"), ("guidance_mode", "stream.guidance_mode"),
                      ("source_prompt", "stream.source_prompt"), ("negative_prompt", "stream.negative_prompt"),
                      ("seed", "stream.seed"), ("temporal", "temporal.kind"), ("noise", "stream.noise")):
        value = getattr(args, flag)
        if value is not None:
            apply_overrides(cfg, [f"{key}={value!r}"])
    if args.stream_batch:
        cfg.stream.stream_batch = True
    return apply_overrides(cfg, args.set)


def temporal_config(args: argparse.Namespace, cfg):
    """The temporal module: the trained folder's own config, or the run config's. Asking for a
    different module than the trained one is refused, not silently ignored."""
    from jaxvid.models.temporal import TemporalConfig
    from jaxvid.weights.temporal import read_temporal_config

    if args.memory is None:
        return TemporalConfig(**cfg.temporal.to_dict())
    trained = read_temporal_config(args.memory)
    asked = [item.partition("=")[0] for item in args.set if item.startswith("temporal.")]
    if asked or (args.temporal and args.temporal != trained.kind):
        raise ValueError(f"--memory {args.memory} holds a trained {trained}; it cannot also be changed with "
                         f"{', '.join(asked) or '--temporal ' + args.temporal}")
    return trained


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from jaxvid.data.stream import ThreadedSource, open_source
    from jaxvid.data.video import VideoWriter
    from jaxvid.models.temporal import temporal_unet
    from jaxvid.pipelines.svdiff import StreamConfig, StreamEditor
    from jaxvid.weights.loaders import load_tiny_vae
    from jaxvid.pipelines.default import default_temporal
    from jaxvid.weights.temporal import load_temporal, read_temporal_config

    # everything that can be wrong is checked, and the input opened, before any model is loaded
    spec_in = resolve_input(args)
    spec = model_spec(args)
    cfg = build_config(args)
    stream_cfg = StreamConfig(**cfg.stream.to_dict())
    tcfg = temporal_config(args, cfg)
    height, width = cfg.size or (spec.default_size, spec.default_size)
    check_size(spec, height, width)
    check_prompts(spec, {"prompt": args.prompt}, [stream_cfg.source_prompt, stream_cfg.negative_prompt])
    if args.tiny_vae is not None and not args.tiny_vae.is_dir():
        raise FileNotFoundError(f"tiny VAE folder not found: {args.tiny_vae}")
    # the built-in model's trained module of the asked kind, unless its shape was overridden
    reshaped = any(item.startswith("temporal.") and not item.startswith("temporal.kind=") for item in args.set)
    memory = args.memory or (default_temporal(tcfg.kind) if args.model is None and not reshaped else None)
    if memory and not args.memory:
        tcfg = read_temporal_config(memory)
    source = open_source(spec_in, height, width, args.input_size)
    fps = output_fps(args.fps, source.fps, 30.0)

    bundle = load_bundle(args)
    if args.tiny_vae:
        bundle = bundle.replace(vae=load_tiny_vae(args.tiny_vae))
    model = temporal_unet(bundle.unet, tcfg, seed=stream_cfg.seed)
    if memory:
        load_temporal(model, memory)
        if not args.memory:
            console.print(f"[yellow]note:[/] using the built-in model's trained {tcfg.kind} module")
    else:
        console.print(f"[yellow]note:[/] no --memory given: the {tcfg.kind} modules are untrained "
                      f"({untrained_effect(tcfg.kind)})")
    editor = StreamEditor(bundle, model, args.prompt, stream_cfg, height=height, width=width)
    state = editor.init_state()
    reader = ThreadedSource(source.frames, cfg.policy)
    total = min(x for x in (args.max_frames, source.total) if x) if (args.max_frames or source.total) else None
    stats = _Stats()
    bar = None
    fed = 0
    try:
        with VideoWriter(args.output, fps=fps) as writer:
            starts: collections.deque[float] = collections.deque()  # when each frame in flight began

            def emit(out) -> None:
                nonlocal bar
                writer.write(out)
                stats.frame(starts.popleft())
                if bar is None:
                    console.print(f"first frame in {stats.first_s:.1f}s (includes compiling the stream step)")
                    # every frame redraws the line (frames are slow enough), so a reader of the log
                    # sees each count: tqdm's adaptive skipping would hide the last ones
                    bar = tqdm(total=total, initial=1, desc="streaming", unit="frame", miniters=1, mininterval=0)
                else:
                    bar.set_postfix(fps=f"{stats.fps:.1f}", latency_ms=f"{stats.latency_ms:.0f}",
                                    dropped=reader.dropped)
                    bar.update(1)

            try:
                wait = time.perf_counter()
                for frame, arrived in reader:
                    starts.append(max(arrived, wait))  # a queued frame's latency starts when it is taken
                    out, ok, state = editor.step(state, frame)
                    out = np.asarray(out)  # waits for the device
                    fed += 1
                    if bool(ok):
                        emit(out)
                    if args.max_frames and fed >= args.max_frames:
                        break
                    wait = time.perf_counter()
                for _ in range(min(fed, editor.delay)):  # stream batch: finish the frames still in flight
                    out, ok, state = editor.step(state, frame)
                    emit(np.asarray(out))
            except KeyboardInterrupt:
                console.print("[yellow]interrupted: closing the output[/]")
    finally:
        reader.close()
        if bar is not None:
            bar.close()
    console.print(f"wrote {stats.count} frames to {args.output} at {fps:g} fps "
                  f"({reader.dropped} dropped by the '{cfg.policy}' policy); steady state {stats.fps:.1f} fps, "
                  f"latency {stats.latency_ms:.0f} ms")
    return 0


def untrained_effect(kind: str) -> str:
    """What an untrained module of each kind does (the learned ones start as an identity)."""
    if kind == "shift":
        return "temporal shift has no weights: it mixes in the previous frame's channels, untrained UNet or not"
    return "their output projections start at zero, so each frame is edited independently"


class _Stats:
    """Steady-state rate and latency, excluding the first frame (which compiles)."""

    def __init__(self):
        self.count, self.first_s, self.latency_ms = 0, 0.0, 0.0
        self._t_first = None
        self._lat: collections.deque[float] = collections.deque(maxlen=30)

    def frame(self, start: float) -> None:
        now = time.perf_counter()
        self.count += 1
        if self.count == 1:
            self.first_s, self._t_first = now - start, now
            return
        self._lat.append((now - start) * 1e3)
        self.latency_ms = float(np.mean(self._lat))

    @property
    def fps(self) -> float:
        if self.count < 2:
            return 0.0
        return (self.count - 1) / (time.perf_counter() - self._t_first)
