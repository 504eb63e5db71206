"""FastVideoEdit attention control as an :class:`AttentionControl` pytree.

The UNet batch is laid out ``[G, 3, m]``: guidance halves (conditional, then unconditional
when classifier-free guidance is on), branches (source, edit, background), frames. Every
block's own projections are used, so the base weights serve unchanged.

Self-attention ("frames" = the ``m`` frames of this call, concatenated as keys/values):

* edit branch, CF-Masa: early (step within t_s) -> Q source, K source (all frames), V edit (all
  frames); late -> Q, K, V of the edit branch (all frames);
* background branch, Bg-Masa: early (within t_bg) -> Q, K, V source; late -> Q edit, K, V source;
* source branch: per-frame self-attention, or across frames with ``source_cross_frame``.
  A switched-off variant is ordinary per-frame self-attention of its branch.

Cross-attention, Re-CA (edit branch, conditional half, while active): aligned target tokens
take the source branch's attention column of their counterpart, new tokens keep the edit
branch's own column times ``replace_scale``.

TokenFlow: ``mode="keyframes"`` runs the above jointly over keyframes and captures, per site,
the source branch's normalised self-attention input and every branch's self-attention output;
``mode="propagate"`` replaces self-attention of each frame by the keyframe outputs at the
nearest-neighbour tokens (cosine similarity of source-branch inputs) of its two neighbouring
keyframes, mixed by relative frame position.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxvid.models.attention import Attention, attention_probs, get_attention_kernel


def reweighted_cross_attention(p_src: jax.Array, p_edit: jax.Array, mapper: jax.Array, aligned: jax.Array,
                               scale: jax.Array | float) -> jax.Array:
    """Re-CA on cross-attention probabilities ``[..., L]``: a target token that aligns to source
    token ``mapper[j]`` takes the source map's column ``mapper[j]``; a new token keeps the edit
    map's own column times ``scale`` (Prompt-to-Prompt's refinement with re-weighting)."""
    return jnp.where(aligned, jnp.take(p_src, mapper, axis=-1), scale * p_edit)


@struct.dataclass
class TokenFlowInputs:
    """Keyframe captures per site (tuples indexed by site) and each frame's two neighbours."""

    src: tuple[jax.Array, ...]  # [K, N, C] source-branch self-attention inputs (conditional half)
    out: tuple[jax.Array, ...]  # [G*3*K, N, C] self-attention outputs of every branch/half
    minus: jax.Array  # [m] index into the K keyframes of the keyframe at/before each frame
    plus: jax.Array  # [m] ... at/after each frame
    weight: jax.Array  # [m] weight of ``plus`` (relative position between the two)


@struct.dataclass
class EditControl:
    self_early: jax.Array  # bool scalar: step is inside the self-attention control fraction (t_s)
    bg_early: jax.Array  # bool scalar: step is inside the background-control fraction (t_bg)
    cross_on: jax.Array  # bool scalar: Re-CA active at this step
    mapper: jax.Array  # int32 [L]
    aligned: jax.Array  # bool [L]
    edited: jax.Array  # bool [L]: target tokens whose attention makes the paper-mode blend mask
    text: jax.Array  # bool [L]
    replace_scale: jax.Array  # float scalar
    tokenflow: TokenFlowInputs | None = None
    groups: int = struct.field(pytree_node=False, default=1)
    frames: int = struct.field(pytree_node=False, default=1)
    cf_masa: bool = struct.field(pytree_node=False, default=True)
    bg_masa: bool = struct.field(pytree_node=False, default=True)
    re_ca: bool = struct.field(pytree_node=False, default=True)
    source_cross_frame: bool = struct.field(pytree_node=False, default=False)
    blend_tokens: int = struct.field(pytree_node=False, default=-1)  # tokens of the blend level; -1: no capture
    blend_mode: str = struct.field(pytree_node=False, default="paper")  # paper | released (see control/blend.py)
    mode: str = struct.field(pytree_node=False, default="joint")  # joint | keyframes | propagate
    kernel: str = struct.field(pytree_node=False, default="auto")

    # ---- self-attention -------------------------------------------------------------------
    def _attend(self, attn: Attention, branches: list[tuple[jax.Array, jax.Array, jax.Array, bool]]) -> list[jax.Array]:
        """Attention for each branch's ``(q, k, v, joint)``, all ``[G, m, N, H, D]``; joint: keys
        and values of all m frames serve every query. Branches with the same layout share one
        kernel call: fewer, larger ops, and equal inputs give bitwise equal outputs."""
        kernel = get_attention_kernel(self.kernel)
        out: list[jax.Array | None] = [None] * len(branches)
        for joint in (False, True):
            idx = [i for i, b in enumerate(branches) if b[3] == joint]
            if not idx:
                continue
            G, m, N, H, D = branches[idx[0]][0].shape
            shape = (len(idx) * G, m * N, H, D) if joint else (len(idx) * G * m, N, H, D)
            q, k, v = (jnp.stack([branches[i][j] for i in idx]).reshape(shape) for j in range(3))
            o = kernel(q, k, v, scale=attn.scale, upcast=attn.upcast_attention).reshape(len(idx), G, m, N, H, D)
            for n, i in enumerate(idx):
                out[i] = o[n]
        return out

    def self_attention(self, site: int, attn: Attention, h: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
        G, m = self.groups, self.frames
        B, N, C = h.shape
        if B != G * 3 * m:
            raise ValueError(f"attention control expects a batch of {G}x3x{m}, got {B}")
        if self.mode == "propagate":
            return self._propagate(site, h), {}
        q, k, v = (a.reshape(G, 3, m, N, attn.heads, attn.dim_head) for a in attn.qkv(h))
        (qs, qe, qb), (ks, ke, kb), (vs, ve, vb) = ([a[:, i] for i in range(3)] for a in (q, k, v))
        early = self.self_early
        src = (qs, ks, vs, self.source_cross_frame)
        if self.cf_masa:
            edit = (jnp.where(early, qs, qe), jnp.where(early, ks, ke), ve, True)
        else:
            edit = (qe, ke, ve, False)
        bg = (jnp.where(self.bg_early, qs, qe), ks, vs, True) if self.bg_masa else (qb, kb, vb, False)
        o = jnp.stack(self._attend(attn, [src, edit, bg]), axis=1)
        out = attn.project_out(o.reshape(B, N, attn.heads, attn.dim_head))
        caps = {}
        if self.mode == "keyframes":
            caps = {"tf_src": h.reshape(G, 3, m, N, C)[0, 0], "tf_out": out}
        return out, caps

    def _propagate(self, site: int, h: jax.Array) -> jax.Array:
        tf = self.tokenflow
        G, m = self.groups, self.frames
        B, N, C = h.shape
        store_src = tf.src[site]  # [K, N, C]
        K = store_src.shape[0]
        store_out = tf.out[site].reshape(G * 3, K, N, C)
        unit = lambda a: a / (jnp.linalg.norm(a.astype(jnp.float32), axis=-1, keepdims=True) + 1e-6)  # noqa: E731
        query = unit(h.reshape(G, 3, m, N, C)[0, 0])

        def from_keyframe(kidx: jax.Array) -> jax.Array:
            sim = jnp.einsum("mnc,mkc->mnk", query, unit(store_src[kidx]))
            nearest = jnp.argmax(sim, axis=-1)  # [m, N]
            feats = store_out[:, kidx]  # [G*3, m, N, C]
            return jnp.take_along_axis(feats, nearest[None, :, :, None], axis=2)

        w = tf.weight.astype(h.dtype)[None, :, None, None]
        out = w * from_keyframe(tf.plus) + (1 - w) * from_keyframe(tf.minus)
        return out.reshape(B, N, C)

    # ---- cross-attention ------------------------------------------------------------------
    def cross_attention(
        self, site: int, attn: Attention, h: jax.Array, context: jax.Array
    ) -> tuple[jax.Array, dict[str, Any]]:
        G, m = self.groups, self.frames
        B, N, _ = h.shape
        q, k, v = attn.qkv(h, context)
        p = attention_probs(q, k, scale=attn.scale, upcast=attn.upcast_attention)  # [B, H, N, L]
        H, L = p.shape[1], p.shape[-1]
        p = p.reshape(G, 3, m, H, N, L)
        if self.re_ca:
            replaced = reweighted_cross_attention(p[0, 0], p[0, 1], self.mapper, self.aligned, self.replace_scale)
            p = p.at[0, 1].set(jnp.where(self.cross_on, replaced, p[0, 1]))
        o = jnp.einsum("bhqk,bkhd->bqhd", p.reshape(B, H, N, L).astype(v.dtype), v)
        caps = {}
        if N == self.blend_tokens and self.blend_mode == "paper":
            a = p[0, 1].mean(axis=1)  # edit branch, conditional half, mean over heads: [m, N, L]
            num = (a * self.edited).sum(-1)
            den = (a * self.text).sum(-1)
            caps["blend"] = num / jnp.maximum(den, 1e-8)
        elif N == self.blend_tokens:  # released: the source branch's maps over all tokens
            caps["blend"] = p[0, 0].mean(axis=1)  # [m, N, L]
        return attn.project_out(o), caps
