"""CLIP video metrics (FastVideoEdit §5.1, SVDiff §5.1) with jaxvid's Flax CLIP, from any local
CLIP folder (ViT-B/32, ViT-L/14...):

* temporal consistency: mean cosine similarity of consecutive frames' image embeddings;
* text similarity: mean CLIP score (100 x cosine) of each frame against the target prompt;
* CLIP accuracy: share of frames whose embedding is closer to the target prompt than to the
  source prompt.

Images are preprocessed exactly as transformers' ``CLIPImageProcessor`` does (resize of the
shortest side with PIL bicubic, center crop, rescale, normalise; settings from the folder's
``preprocessor_config.json`` when it has one).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from PIL import Image

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclasses.dataclass(frozen=True)
class ClipPreprocess:
    shortest_edge: int = 224
    crop: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD
    resample: int = Image.BICUBIC

    @classmethod
    def from_folder(cls, folder: str | Path, image_size: int) -> "ClipPreprocess":
        path = Path(folder) / "preprocessor_config.json"
        if not path.exists():
            return cls(image_size, (image_size, image_size))
        d = json.loads(path.read_text())
        size = d.get("size", image_size)
        crop = d.get("crop_size", image_size)
        return cls(
            shortest_edge=size.get("shortest_edge", image_size) if isinstance(size, dict) else int(size),
            crop=(crop["height"], crop["width"]) if isinstance(crop, dict) else (int(crop), int(crop)),
            mean=tuple(d.get("image_mean", OPENAI_MEAN)), std=tuple(d.get("image_std", OPENAI_STD)),
            resample=int(d.get("resample", Image.BICUBIC)),
        )

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, 3]`` -> float32 NHWC pixels for the vision tower."""
        out = []
        for f in np.asarray(frames):
            h, w = f.shape[:2]
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.shortest_edge * long / short)
            size = (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)  # (w, h)
            img = np.asarray(Image.fromarray(f).resize(size, resample=self.resample), np.float32)
            ch, cw = self.crop
            top, left = (img.shape[0] - ch) // 2, (img.shape[1] - cw) // 2
            img = img[top:top + ch, left:left + cw] * (1 / 255)
            out.append((img - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32))
        return np.stack(out).astype(np.float32)


@jax.jit
def _image_features(graphdef, state, pixels):
    f = nnx.merge(graphdef, state).get_image_features(pixels)
    return f / jnp.linalg.norm(f, axis=-1, keepdims=True)


@jax.jit
def _text_features(graphdef, state, ids):
    f = nnx.merge(graphdef, state).get_text_features(ids)
    return f / jnp.linalg.norm(f, axis=-1, keepdims=True)


def temporal_consistency(image_embeddings: np.ndarray) -> float:
    """Mean cosine similarity of consecutive (unit-norm) embeddings; 1.0 for a single frame."""
    e = np.asarray(image_embeddings, np.float64)
    if len(e) < 2:
        return 1.0
    return float(np.mean(np.sum(e[1:] * e[:-1], axis=-1)))


def text_similarity(image_embeddings: np.ndarray, text_embedding: np.ndarray) -> float:
    """Mean CLIP score: 100 x cosine of each frame with the text."""
    return float(100 * np.mean(np.asarray(image_embeddings, np.float64) @ np.asarray(text_embedding, np.float64)))


def clip_accuracy(image_embeddings: np.ndarray, target: np.ndarray, source: np.ndarray) -> float:
    """Share of frames closer to the target prompt than to the source prompt."""
    e = np.asarray(image_embeddings, np.float64)
    return float(np.mean(e @ np.asarray(target, np.float64) > e @ np.asarray(source, np.float64)))


class ClipScorer:
    """Embeddings and the three video metrics from a local CLIP folder (``CLIPModel`` weights,
    tokenizer and, if present, ``preprocessor_config.json``)."""

    def __init__(self, folder: str | Path, *, batch: int = 32, progress: bool = False):
        from jaxvid.weights.loaders import load_clip, load_tokenizer

        folder = Path(folder)
        self.model = load_clip(folder)
        tok_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        self.tokenizer = load_tokenizer(tok_dir)
        self.preprocess = ClipPreprocess.from_folder(folder, self.model.config.vision_config.image_size)
        self.batch, self.progress = batch, progress
        self._split = nnx.split(self.model)

    def image_embeddings(self, frames: np.ndarray) -> np.ndarray:
        from tqdm import tqdm

        frames = np.asarray(frames)
        out = []
        for i in tqdm(range(0, len(frames), self.batch), desc="CLIP", unit="batch", disable=not self.progress):
            chunk = frames[i:i + self.batch]
            pad = self.batch - len(chunk)  # one compiled shape for every batch
            pixels = self.preprocess(np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk)
            out.append(np.asarray(_image_features(*self._split, jnp.asarray(pixels)))[: len(chunk)])
        return np.concatenate(out)

    def text_embeddings(self, prompts: Sequence[str]) -> np.ndarray:
        from jaxvid.text import tokenize

        ids = tokenize(self.tokenizer, list(prompts), max_length=self.model.config.text_config.max_position_embeddings)
        return np.asarray(_text_features(*self._split, jnp.asarray(ids)))

    def video_metrics(self, frames: np.ndarray, target_prompt: str, source_prompt: str) -> dict[str, float]:
        e = self.image_embeddings(frames)
        target, source = self.text_embeddings([target_prompt, source_prompt])
        return {"tem_con": temporal_consistency(e), "txt_sim": text_similarity(e, target),
                "clip_acc": clip_accuracy(e, target, source)}
