"""Quality against the toy world's ground truth: the exact edited video and the region the edit
may change are known (``jaxvid.data.toyworld.ToyWorld.edit``), so an edit is measured, not guessed.

* ``psnr_in`` / ``psnr_out``: PSNR to the ground-truth edited video inside / outside the edit
  region (outside is where a good edit leaves the source alone);
* ``ssim_in`` / ``ssim_out``: the SSIM map (Gaussian window, sigma 1.5) averaged over each region;
* ``attr_acc``: share of frames whose edited attribute is right, measured without learned
  weights: an object's colour by the hue of the object's pixels (nearest of the eight colours);
  a shape by the silhouette of the target colour, which must overlap the new shape more than the
  old one; a background by being closer (MSE, background pixels) to the target than to the source;
* ``temporal_psnr``: PSNR between the output's frame-to-frame changes and the ground truth's
  (flicker and motion errors both lower it; a perfect edit has the true motion).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from jaxvid.data.toyworld import COLORS, ToyEdit, nearest_color, render


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB, 8-bit) over the pixels where ``mask`` ([F, H, W] bool) is true."""
    err = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        err = err[np.broadcast_to(mask[..., None], err.shape)]
    return float(10 * np.log10(255.0**2 / max(float(err.mean()), 1e-10)))


def ssim_map(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Per-pixel SSIM ``[F, H, W]`` (mean over channels) of two uint8 videos (Wang et al. 2004)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: gaussian_filter(x, sigma=(0, sigma, sigma, 0))  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return s.mean(-1)


def _object_color_correct(frame: np.ndarray, silhouette: np.ndarray, color: str) -> bool:
    if silhouette.sum() < 4:
        return True  # the object is (nearly) hidden in this frame: nothing to judge
    return nearest_color(frame[silhouette].mean(0)) == color


def _shape_correct(frame: np.ndarray, new: np.ndarray, old: np.ndarray, color: str) -> bool:
    rgb = np.asarray(COLORS[color], np.float64)
    pixels = np.linalg.norm(frame.astype(np.float64) - rgb, axis=-1) < 60  # the object's colour
    iou = lambda m: (pixels & m).sum() / max(1, (pixels | m).sum())  # noqa: E731
    return iou(new) > iou(old)


def attribute_accuracy(out: np.ndarray, edit: ToyEdit) -> float:
    """Share of frames with the edited attribute right (see the module doc)."""
    frames = len(out)
    size = out.shape[1]
    if edit.kind.startswith("object"):
        _, src_cover = render(edit.source_scene, frames, size)
        _, tgt_cover = render(edit.target_scene, frames, size)
        new, old = tgt_cover[:, 0] > 0.5, src_cover[:, 0] > 0.5
        color = edit.target_scene.objects[0].color
        if edit.kind == "object_color":
            ok = [_object_color_correct(out[f], new[f], color) for f in range(frames)]
        else:
            ok = [_shape_correct(out[f], new[f], old[f], color) for f in range(frames)]
    else:
        bg = edit.mask
        err = lambda a: ((out.astype(np.float64) - a) ** 2).sum(-1)  # noqa: E731
        ok = [(err(edit.target)[f][bg[f]].mean() < err(edit.source)[f][bg[f]].mean()) for f in range(frames)]
    return float(np.mean(ok))


def toy_metrics(out: np.ndarray, edit: ToyEdit) -> dict[str, float]:
    """All ground-truth metrics of an edited toy video ``out`` (uint8, same shape as the edit)."""
    out = np.asarray(out)
    if out.shape != edit.target.shape:
        raise ValueError(f"output {out.shape} does not match the ground truth {edit.target.shape}")
    s = ssim_map(out, edit.target)
    inside, outside = edit.mask, ~edit.mask
    d_out = out[1:].astype(np.int16) - out[:-1].astype(np.int16)
    d_gt = edit.target[1:].astype(np.int16) - edit.target[:-1].astype(np.int16)
    return {
        "psnr_in": psnr(out, edit.target, inside), "psnr_out": psnr(out, edit.target, outside),
        "ssim_in": float(s[inside].mean()) if inside.any() else float("nan"),
        "ssim_out": float(s[outside].mean()) if outside.any() else float("nan"),
        "attr_acc": attribute_accuracy(out, edit),
        "temporal_psnr": psnr(d_out + 255, d_gt + 255) if len(out) > 1 else float("nan"),
    }
