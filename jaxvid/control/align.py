"""Prompt alignment for attention control: which target tokens have a counterpart in the
source prompt (their cross-attention column is taken from the source branch), which are new
(edited: re-weighted, and the latent-blend mask is built from them).

Words are CLIP's own pre-tokenised words (a word ends with a ``</w>`` BPE token), aligned with
a longest-matching-subsequence diff, then mapped onto CLIP token positions (0 = BOS). A
substituted word ("red" -> "blue") counts as new, as it must for attribute edits.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class TokenAlignment:
    """Arrays over the ``max_length`` target token positions."""

    mapper: np.ndarray  # int32: source position of each target token (itself where new)
    aligned: np.ndarray  # bool: target token has a source counterpart
    edited: np.ndarray  # bool: target tokens whose attention mass defines the (paper) blend mask
    text: np.ndarray  # bool: the prompt's word tokens (no BOS/EOS/padding): the blend denominator
    change: np.ndarray  # bool: *source* tokens of the change words (the released code's blend mask)


def _words(tokenizer, prompt: str) -> list[list[str]]:
    words, cur = [], []
    for tok in tokenizer.tokenize(prompt):
        cur.append(tok)
        if tok.endswith("</w>"):
            words.append(cur)
            cur = []
    if cur:
        words.append(cur)
    return words


def _word_positions(tokenizer, words: Sequence[str], prompt_words: list[list[str]], starts, max_length: int,
                    what: str, prompt: str) -> np.ndarray:
    """Token positions (bool [max_length]) of every prompt word that is one of ``words``."""
    wanted = {"".join(w) for ws in words for w in _words(tokenizer, ws)}
    present = {"".join(w) for w in prompt_words}
    missing = [ws for ws in words if not {"".join(w) for w in _words(tokenizer, ws)} <= present]
    if missing:
        raise ValueError(f"{what} {missing} do not occur in the {'target' if what == 'blend words' else 'source'} "
                         f"prompt {prompt!r}")
    out = np.zeros(max_length, bool)
    for i, w in enumerate(prompt_words):
        if "".join(w) in wanted:
            out[starts[i] : starts[i] + len(w)] = True
    return out


def align_prompts(
    tokenizer, source: str, target: str, *, blend_words: Sequence[str] | None = None,
    change_words: Sequence[str] | None = None, max_length: int = 77,
) -> TokenAlignment:
    src_words, tgt_words = _words(tokenizer, source), _words(tokenizer, target)
    n_src, n_tgt = sum(map(len, src_words)), sum(map(len, tgt_words))
    if max(n_src, n_tgt) > max_length - 2:
        raise ValueError(f"prompt longer than the text encoder's {max_length - 2} tokens")
    src_start = np.cumsum([1] + [len(w) for w in src_words])  # token position of each word
    tgt_start = np.cumsum([1] + [len(w) for w in tgt_words])
    mapper = np.arange(max_length, dtype=np.int32)
    aligned = np.zeros(max_length, bool)
    aligned[0] = True  # BOS
    sm = difflib.SequenceMatcher(a=["".join(w) for w in src_words], b=["".join(w) for w in tgt_words], autojunk=False)
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            si, ti = block.a + k, block.b + k
            for j in range(len(tgt_words[ti])):
                mapper[tgt_start[ti] + j] = src_start[si] + j
                aligned[tgt_start[ti] + j] = True
    # EOS and padding follow their counterparts in the source
    tail = np.arange(n_tgt + 1, max_length)
    mapper[tail] = np.minimum(tail - (n_tgt + 1) + (n_src + 1), max_length - 1)
    aligned[tail] = True
    text = np.zeros(max_length, bool)
    text[1 : n_tgt + 1] = True
    if blend_words:
        edited = _word_positions(tokenizer, blend_words, tgt_words, tgt_start, max_length, "blend words", target)
    else:
        edited = text & ~aligned
    change = (_word_positions(tokenizer, change_words, src_words, src_start, max_length, "change words", source)
              if change_words else np.zeros(max_length, bool))
    return TokenAlignment(mapper=mapper, aligned=aligned, edited=edited, text=text, change=change)
