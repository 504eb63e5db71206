"""Seconds per clip of FastVideoEdit: jaxvid (one jitted edit) vs a PyTorch diffusers loop doing
the same UNet workload, side by side in one run, same weights.

    python experiments/bench_fastvideoedit.py --preset tiny --frames 32 --size 128               # CPU
    python experiments/bench_fastvideoedit.py --preset sd15 --frames 32 --size 512 --dtype bfloat16  # GPU

Same workload on both sides, per step: with TokenFlow one UNet call on the keyframes
(batch G*3*K, self-attention joint over the keyframes of each branch), then one call per chunk
of 8 frames (batch G*3*8) whose self-attention is replaced by nearest-neighbour propagation
from the keyframes; without TokenFlow one call per chunk with joint self-attention. G = 2
(classifier-free guidance on the three branches). The PyTorch side implements the joint
attention and the propagation as diffusers attention processors; attention control that only
re-indexes (Re-CA, branch swaps) is left out there, so the comparison slightly favours PyTorch.
Writes outputs/bench/bench_fastvideoedit_<preset>_<dtype>_<backend>_<tokenflow|chunks>.json
(``--update-results``: the committed experiments/results/).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.models import get_config  # noqa: E402
from experiments.common import add_output_args, machine, torch_unet_pair, write_results  # noqa: E402
from jaxvid.models.attention import attention_kernel_names as attention_kernels  # noqa: E402


def torch_processors(torch, F):
    """Joint (frames-concatenated) self-attention and TokenFlow propagation for diffusers."""

    class Joint:
        def __init__(self, store, name):
            self.store, self.name = store, name

        def __call__(self, attn, hidden, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
            B, N, C = hidden.shape
            m = self.store["frames"]
            if encoder_hidden_states is not None:  # cross-attention: ordinary
                ctx = encoder_hidden_states
                q, k, v = attn.to_q(hidden), attn.to_k(ctx), attn.to_v(ctx)
                split = lambda t: t.view(t.shape[0], -1, attn.heads, C // attn.heads).transpose(1, 2)  # noqa: E731
                o = F.scaled_dot_product_attention(split(q), split(k), split(v))
                return attn.to_out[0](o.transpose(1, 2).reshape(B, N, C))
            if self.store["mode"] == "propagate":
                src_kf, out_kf = self.store[self.name]
                minus, plus, w = self.store["neighbours"]
                G3 = B // m
                q = F.normalize(hidden.view(G3, m, N, C)[0], dim=-1)
                res = 0
                for kidx, wt in ((plus, w), (minus, 1 - w)):
                    sim = torch.einsum("mnc,mkc->mnk", q, F.normalize(src_kf[kidx], dim=-1))
                    idx = sim.argmax(-1)  # [m, N]
                    feats = out_kf[:, kidx]  # [G3, m, N, C]
                    res = res + wt.view(1, m, 1, 1) * torch.gather(feats, 2, idx[None, :, :, None].expand(G3, m, N, C))
                return res.reshape(B, N, C)
            q, k, v = attn.to_q(hidden), attn.to_k(hidden), attn.to_v(hidden)
            joint = lambda t: t.view(B // m, m * N, attn.heads, C // attn.heads).transpose(1, 2)  # noqa: E731
            o = F.scaled_dot_product_attention(joint(q), joint(k), joint(v))
            out = attn.to_out[0](o.transpose(1, 2).reshape(B, N, C))
            if self.store["mode"] == "keyframes":
                self.store[self.name] = (hidden.view(B // m, m, N, C)[0], out.view(B // m, m, N, C))
            return out

    return Joint


def run_torch(ref, cfg, args, ctx_dim, device):
    import torch
    import torch.nn.functional as F

    Joint = torch_processors(torch, F)
    store = {}
    ref.set_attn_processor({name: Joint(store, name.rsplit(".processor", 1)[0]) for name in ref.attn_processors})
    lat = args.size // 8
    G, m, Fr = 2, 8, args.frames
    dt = ref.dtype
    z = torch.randn(Fr, 4, lat, lat, device=device, dtype=dt)
    ctx = torch.randn(1, 77, ctx_dim, device=device, dtype=dt)
    K = -(-Fr // args.keyframe_interval)

    def step(t):
        outs = []
        if args.tokenflow:
            kf = torch.arange(K, device=device) * args.keyframe_interval
            store.update(mode="keyframes", frames=K)
            x = z[kf].repeat(G * 3, 1, 1, 1)
            ref(x, t, ctx.expand(x.shape[0], -1, -1))
        for c in range(Fr // m):
            frames = torch.arange(c * m, (c + 1) * m, device=device)
            if args.tokenflow:
                minus = torch.clamp(frames // args.keyframe_interval, max=K - 1)
                plus = torch.clamp(minus + 1, max=K - 1)
                w = (frames % args.keyframe_interval).to(dt) / args.keyframe_interval
                store.update(mode="propagate", frames=m, neighbours=(minus, plus, w))
            else:
                store.update(mode="joint", frames=m)
            x = z[frames].repeat(G * 3, 1, 1, 1)
            outs.append(ref(x, t, ctx.expand(x.shape[0], -1, -1)).sample)
        return torch.cat(outs)

    def clip():
        with torch.inference_mode():
            for t in range(args.steps):
                step(torch.tensor(999 - 60 * t, device=device))
            if device == "cuda":
                torch.cuda.synchronize()

    clip()  # warm-up
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        clip()
        times.append(time.perf_counter() - t0)
    return times


def run_jax(ours, cfg, args):
    import jax.numpy as jnp

    from jaxvid.pipelines.bundle import ModelBundle
    from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, FastVideoEditor
    from jaxvid.schedulers.schedule import make_schedule
    from jaxvid.text import default_tokenizer
    from jaxvid.models.build import random_model
    from jaxvid.models.clip import CLIPTextConfig, CLIPTextModel
    from jaxvid.models.vae import AutoencoderKL, VAEConfig

    tcfg = CLIPTextConfig.from_dict(dict(get_config(args.preset).text_encoder))
    if tcfg.hidden_size != ours.config.cross_attention_dim:
        raise ValueError("preset text width must equal the UNet's cross_attention_dim")
    bundle = ModelBundle(
        unet=ours,
        vae=random_model(lambda r: AutoencoderKL(VAEConfig(block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",),
                                                         up_block_types=("UpDecoderBlock2D",), norm_num_groups=8), rngs=r)),
        text_encoder=random_model(lambda r: CLIPTextModel(tcfg, rngs=r)),
        tokenizer=default_tokenizer(),
        schedule=make_schedule(set_alpha_to_one=True),
    )
    ec = FastVideoEditConfig(steps=args.steps, original_inference_steps=max(50, args.steps), chunk_frames=8,
                             tokenflow=args.tokenflow, keyframe_interval=args.keyframe_interval,
                             blend_downsample=args.blend_downsample, source_guidance=1.5)
    editor = FastVideoEditor(bundle, ec)
    lat = args.size // 8
    z = jax.random.normal(jax.random.key(0), (args.frames, lat, lat, 4)).astype(ours.dtype or jnp.float32)
    src, tgt = "a red car on a road", "a blue car on a road"
    t0 = time.perf_counter()
    jax.block_until_ready(editor.edit_latents(z, src, tgt)[0])
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        jax.block_until_ready(editor.edit_latents(z, src, tgt)[0])
        times.append(time.perf_counter() - t0)
    return times, first


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--size", type=int, default=128, help="pixels; latents are size/8")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--attention", default="auto", choices=attention_kernels())
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--keyframe-interval", type=int, default=8)
    ap.add_argument("--no-tokenflow", dest="tokenflow", action="store_false")
    ap.add_argument("--blend-downsample", type=int, default=None)
    add_output_args(ap)
    args = ap.parse_args()
    if args.frames % 8:
        ap.error("--frames must be a multiple of 8 (chunks of 8)")
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = dict(get_config(args.preset).unet)
    if args.blend_downsample is None:
        args.blend_downsample = 2 if args.preset == "tiny" else 4
    ref, ours = torch_unet_pair(cfg, args.dtype, device, attention_kernel=args.attention)
    jt, first = run_jax(ours, cfg, args)
    tt = run_torch(ref, cfg, args, cfg["cross_attention_dim"], device)
    j, p = float(np.median(jt)), float(np.median(tt))
    print(f"FastVideoEdit {args.preset} {args.frames} frames {args.size}px {args.steps} steps "
          f"tokenflow={args.tokenflow} {args.dtype} | jax {jax.devices()[0]} | torch {device}")
    print(f"jaxvid {j:.2f}s/clip (first call incl. compile {first:.1f}s) | torch {p:.2f}s/clip | "
          f"torch/jaxvid {p / j:.2f}")
    path = write_results(
        f"bench_fastvideoedit_{args.preset}_{args.dtype}_{jax.default_backend()}"
        f"{'_tokenflow' if args.tokenflow else '_chunks'}_{args.attention}",
        {"args": vars(args), "machine": machine(), "torch": torch.__version__, "jaxvid_s": jt, "torch_s": tt,
         "jaxvid_first_call_s": first, "torch_over_jaxvid": p / j},
        update=args.update_results,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
