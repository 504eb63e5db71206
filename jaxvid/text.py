"""Prompt tokenisation and encoding (CLIP BPE, 77 tokens).

One policy for prompts over the text encoder's window, everywhere (library, ``generate``,
``edit``, ``stream``): they are refused with :class:`PromptTooLongError`, whose message names
the words that would have been dropped. Nothing is ever cut silently, and a run is never
started with a prompt other than the one the user wrote.
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvid.models.clip import CLIPTextModel

DEFAULT_TOKENIZER_DIR = Path(__file__).parent / "assets" / "clip_tokenizer"
# A fast tokenizer switches padding/truncation modes on its shared Rust object before each call,
# so two threads tokenising at once can get each other's modes: calls are serialised.
_TOKENIZER_LOCK = threading.Lock()


class PromptTooLongError(ValueError):
    """A prompt does not fit the text encoder's token window."""


@functools.cache
def default_tokenizer():
    """The real CLIP BPE tokenizer shipped with jaxvid (same vocabulary as SD 1.x). Built once per
    process (about 0.2 s) and shared: jaxvid's tokenizer has no mutable mode, so sharing is safe."""
    from jaxvid.weights.loaders import load_tokenizer

    return load_tokenizer(DEFAULT_TOKENIZER_DIR)


def check_prompts(tokenizer, prompts: str | Sequence[str], *, max_length: int = 77) -> None:
    """Raise :class:`PromptTooLongError` (naming the dropped words) for a prompt that does not
    fit ``max_length`` tokens with BOS and EOS, and ``TypeError`` for a non-string. Cheap: the
    CLI calls it before loading any model."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be strings, got {[type(p).__name__ for p in prompts]}")
    # verbose=False: the tokenizer's own "longer than the maximum" warning would be misleading here
    with _TOKENIZER_LOCK:
        full = tokenizer(list(prompts), padding=False, truncation=False, verbose=False)["input_ids"]
    for ids in full:
        if len(ids) > max_length:
            kept = tokenizer.decode(ids[1 : max_length - 1])
            dropped = tokenizer.decode(ids[max_length - 1 : -1])
            raise PromptTooLongError(
                f"prompt is {len(ids) - 2} tokens, over the text encoder's limit of {max_length - 2}: "
                f"it would keep {kept!r} and drop {dropped!r}; shorten it"
            )


def tokenize(tokenizer, prompts: str | Sequence[str], *, max_length: int = 77) -> np.ndarray:
    """Token ids ``[B, max_length]`` (BOS, text, EOS, padding); over-long prompts raise."""
    if isinstance(prompts, str):
        prompts = [prompts]
    check_prompts(tokenizer, prompts, max_length=max_length)
    with _TOKENIZER_LOCK:
        enc = tokenizer(list(prompts), padding="max_length", max_length=max_length, truncation=True,
                        return_tensors="np")
    return np.asarray(enc["input_ids"], dtype=np.int32)


@jax.jit
def _encode(graphdef, state, ids):
    from flax import nnx

    return nnx.merge(graphdef, state)(ids).last_hidden_state


def encode_ids(text_encoder: CLIPTextModel, ids: np.ndarray) -> jax.Array:
    """Per-token embeddings ``[B, L, D]`` of token ids (jitted)."""
    from flax import nnx

    graphdef, state = nnx.split(text_encoder)
    return _encode(graphdef, state, jnp.asarray(ids))


def encode_prompt_rows(text_encoder: CLIPTextModel, tokenizer, prompts: Sequence[str]) -> jax.Array:
    """Embeddings ``[len(prompts), L, D]`` for the editors (over-long prompts raise). Identical
    prompts are encoded once and share one row, so they are equal bit for bit (the identity
    invariants rely on it)."""
    unique = list(dict.fromkeys(prompts))
    ids = tokenize(tokenizer, unique, max_length=text_encoder.config.max_position_embeddings)
    return encode_ids(text_encoder, ids)[jnp.asarray([unique.index(p) for p in prompts])]


def encode_prompts(text_encoder: CLIPTextModel, tokenizer, prompts: str | Sequence[str]) -> jax.Array:
    """Per-token text embeddings ``[B, 77, D]`` that condition the UNet (empty string = unconditional)."""
    ids = tokenize(tokenizer, prompts, max_length=text_encoder.config.max_position_embeddings)
    return encode_ids(text_encoder, ids)
