"""Editing methods for the evaluation runner, by name (a registry; ``jaxvid eval --methods``).

A method edits one :class:`~jaxvid.evaluation.datasets.EvalItem` and returns the edited frames
and its wall time split (``inversion_s``, ``forward_s``, ``total_s``; a method without an
inversion reports 0 there). Names:

* ``fve`` (FastVideoEdit, the preset's config) and its ablations ``fve-no_cf_masa``,
  ``fve-no_bg_masa``, ``fve-no_reca``, ``fve-no_blend``, ``fve-no_tokenflow``;
  ``fve-released`` (the released code's profile and settings);
* ``svdiff`` (the model's trained memory), ``svdiff-zero`` (an untrained memory: frames edited
  independently), ``svdiff-<kind>`` for every trained temporal module folder the model has
  (``window``, ``sliding``, ``linear``...; ``svdiff-shift`` needs no weights), or ``svdiff@PATH`` for any folder;
* ``per_frame``: image-to-image of every frame on its own (the floor: no temporal model at all).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Callable

import numpy as np

FVE_ABLATIONS = {"no_cf_masa": dict(cf_masa=False), "no_bg_masa": dict(bg_masa=False), "no_reca": dict(re_ca=False),
                 "no_blend": dict(blend_start_step=None), "no_tokenflow": dict(tokenflow=False)}


@dataclasses.dataclass
class Method:
    name: str
    run: Callable  # (EvalItem) -> (frames uint8, timings dict)
    params: int | None = None  # extra parameters over the base model (temporal modules)


def _fve(bundle, edit_config, name: str, overrides: dict) -> Method:
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor

    cfg = dataclasses.replace(edit_config, **overrides)
    if name == "fve-released":
        cfg = FastVideoEditConfig.released(**{**dataclasses.asdict(cfg), "profile": "released",
                                              "blend_start_step": None})  # its mask needs per-video change words
    editor = FastVideoEditor(bundle, cfg)

    def run(item):
        r = editor.edit(item.frames, item.source_prompt, item.target_prompt)
        total = sum(r.timings.values())
        return r.frames, {"inversion_s": 0.0, "forward_s": total, "total_s": total}

    return Method(name, run)


def _svdiff(bundle, stream_config, name: str, folder: Path | None, kind: str = "memory") -> Method:
    from jaxvid.models.temporal import TemporalConfig, temporal_unet
    from jaxvid.pipelines.svdiff import StreamEditor
    from jaxvid.weights.convert import param_paths
    from jaxvid.weights.temporal import load_temporal, read_temporal_config

    tcfg = read_temporal_config(folder) if folder is not None else TemporalConfig(kind=kind)
    model = temporal_unet(bundle.unet, tcfg)
    if folder is not None:
        load_temporal(model, folder)
    params = sum(int(np.prod(v.shape)) for v in param_paths(model.temporal).values())
    editors: dict = {}
    gflops: dict = {}

    def run(item):
        h, w = item.frames.shape[1:3]
        key = (item.target_prompt, item.source_prompt, h, w)
        if key not in editors:  # one editor per prompt pair and size; the compiled step is shared
            editors.clear()
            editors[key] = StreamEditor(bundle, model, item.target_prompt,
                                        dataclasses.replace(stream_config, source_prompt=item.source_prompt),
                                        height=h, width=w)
        ed = editors[key]
        state, outs = ed.init_state(), []
        if (h, w) not in gflops:  # FLOPs of one step, every denoising step counted (traced only)
            import jax

            from jaxvid.flops import count_flops

            gflops[(h, w)] = count_flops(ed.step_fn(), state, jax.ShapeDtypeStruct((h, w, 3), np.float32)) / 1e9
        t0 = time.perf_counter()
        for f in item.frames:
            out, ok, state = ed.step(state, f)
            if bool(ok):
                outs.append(np.asarray(out))
        for _ in range(ed.delay):
            out, _, state = ed.step(state, item.frames[-1])
            outs.append(np.asarray(out))
        total = time.perf_counter() - t0
        return np.stack(outs), {"inversion_s": float("nan"), "forward_s": total, "total_s": total,
                                "fps": len(outs) / total, "gflops_per_frame": gflops[(h, w)]}

    return Method(name, run, params)


def _per_frame(bundle, strength: float, steps: int) -> Method:
    from jaxvid.pipelines.image import ImagePipeline

    pipe = ImagePipeline(bundle)

    def run(item):
        t0 = time.perf_counter()
        outs = [pipe.img2img(f[None], item.target_prompt, strength=strength, steps=steps, seed=i)[0]
                for i, f in enumerate(item.frames)]
        total = time.perf_counter() - t0
        return np.stack(outs), {"inversion_s": 0.0, "forward_s": total, "total_s": total}

    return Method("per_frame", run)


def available(model_dir: Path | None) -> list[str]:
    """Method names for a model (its trained temporal folders add ``svdiff-<kind>``)."""
    names = ["fve", *(f"fve-{a}" for a in FVE_ABLATIONS), "fve-released", "svdiff-zero", "per_frame"]
    temporal = Path(model_dir) / "temporal" if model_dir else None
    if temporal is not None and temporal.is_dir():
        kinds = sorted(p.name for p in temporal.iterdir() if (p / "temporal_config.json").exists())
        names += (["svdiff"] if "memory" in kinds else []) + [f"svdiff-{k}" for k in kinds if k != "memory"]
    from jaxvid.models.temporal import WEIGHTLESS_MODULES

    names += [f"svdiff-{k}" for k in WEIGHTLESS_MODULES if f"svdiff-{k}" not in names]  # need no training
    return names


def build(name: str, bundle, *, model_dir: Path | None, edit_config, stream_config) -> Method:
    """The method called ``name`` (see the module doc)."""
    if name == "fve":
        return _fve(bundle, edit_config, name, {})
    if name.startswith("fve-"):
        ablation = name[4:]
        if ablation != "released" and ablation not in FVE_ABLATIONS:
            raise ValueError(f"unknown FastVideoEdit variant {name!r}; known: fve, fve-released, "
                             f"{', '.join('fve-' + a for a in FVE_ABLATIONS)}")
        return _fve(bundle, edit_config, name, FVE_ABLATIONS.get(ablation, {}))
    if name == "svdiff-zero":
        return _svdiff(bundle, stream_config, name, None)
    if name.startswith("svdiff@"):
        return _svdiff(bundle, stream_config, name, Path(name[7:]))
    if name == "svdiff" or name.startswith("svdiff-"):
        kind = "memory" if name == "svdiff" else name[7:]
        from jaxvid.models.temporal import TEMPORAL_MODULES, WEIGHTLESS_MODULES

        folder = Path(model_dir or "") / "temporal" / kind
        if (folder / "temporal_config.json").exists():
            return _svdiff(bundle, stream_config, name, folder)
        if kind not in TEMPORAL_MODULES:
            raise ValueError(f"unknown temporal module in {name!r}; known: {sorted(TEMPORAL_MODULES)}")
        if kind not in WEIGHTLESS_MODULES:
            raise ValueError(f"{name}: the model has no trained '{kind}' module at {folder}")
        return _svdiff(bundle, stream_config, name, None, kind)
    if name == "per_frame":
        return _per_frame(bundle, strength=0.6, steps=4)
    raise ValueError(f"unknown method {name!r}; known: {', '.join(available(model_dir))} or svdiff@PATH")
