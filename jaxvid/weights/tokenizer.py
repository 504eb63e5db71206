"""The CLIP BPE tokenizer on the ``tokenizers`` library alone.

transformers' ``CLIPTokenizer`` is a thin layer over a ``tokenizers.Tokenizer``, but importing
transformers costs about a second — most of jaxvid's start-up. :class:`CLIPTokenizer` builds the
same Rust pipeline itself (from ``tokenizer.json``, or from the ``vocab.json`` + ``merges.txt``
pair of older folders such as SD1.5's) and offers the slice of the transformers interface jaxvid
uses: ``tok(texts, padding=..., max_length=..., truncation=...)``, ``tokenize``, ``decode`` and
``save_pretrained`` (a folder transformers and diffusers load). Any transformers CLIP tokenizer
can still be passed wherever jaxvid takes a tokenizer. ``tests/test_text.py`` checks the ids,
tokens and decoded text against transformers' own tokenizer for both layouts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

BOS, EOS = "<|startoftext|>", "<|endoftext|>"  # EOS doubles as padding and unknown token, as in CLIP
_WORD_SUFFIX = "</w>"
# CLIP's word splitter: special tokens, English contractions, letter runs, single digits, other symbols
_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def _from_vocab_merges(vocab: Path, merges: Path) -> Tokenizer:
    """CLIP's pipeline around a BPE model: NFC + whitespace folding + lower case, the CLIP word
    split, byte-level BPE with ``</w>`` ending each word, BOS/EOS added around every text."""
    v, m = models.BPE.read_file(str(vocab), str(merges))
    tok = Tokenizer(models.BPE(v, m, dropout=None, continuing_subword_prefix="", end_of_word_suffix=_WORD_SUFFIX,
                               fuse_unk=False, unk_token=EOS))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    # BOS/EOS typed in a prompt are the special tokens themselves, matched before normalisation
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in (BOS, EOS)])
    tok.post_processor = processors.RobertaProcessing((EOS, v[EOS]), (BOS, v[BOS]), trim_offsets=False,
                                                      add_prefix_space=False)
    return tok


class CLIPTokenizer:
    """CLIP BPE tokenizer (49,408 tokens); see the module docstring for the interface."""

    def __init__(self, tokenizer: Tokenizer, model_max_length: int = 77):
        self._tok = tokenizer
        # a tokenizer.json written by transformers carries its last padding/truncation mode:
        # this class pads and truncates per call, explicitly
        self._tok.no_padding()
        self._tok.no_truncation()
        self.model_max_length = model_max_length
        self.bos_token_id = tokenizer.token_to_id(BOS)
        self.eos_token_id = self.pad_token_id = tokenizer.token_to_id(EOS)
        if self.bos_token_id is None or self.eos_token_id is None:
            raise ValueError(f"not a CLIP tokenizer: its vocabulary lacks {BOS} or {EOS}")

    @classmethod
    def from_folder(cls, folder: Path) -> "CLIPTokenizer":
        """``tokenizer.json`` if present, else ``vocab.json`` + ``merges.txt``."""
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        max_len = int(cfg.get("model_max_length", 77))
        max_len = max_len if max_len < 10**6 else 77  # transformers writes a huge sentinel when unset
        if (folder / "tokenizer.json").exists():
            return cls(Tokenizer.from_file(str(folder / "tokenizer.json")), max_len)
        return cls(_from_vocab_merges(folder / "vocab.json", folder / "merges.txt"), max_len)

    def __call__(self, texts: str | Sequence[str], *, padding: bool | str = False, max_length: int | None = None,
                 truncation: bool = False, return_tensors: str | None = None, verbose: bool = True) -> dict:
        """Token ids with BOS/EOS, as transformers returns them: ``{"input_ids": ...}``.
        ``padding="max_length"`` pads with EOS; ``truncation`` cuts the text (not BOS/EOS) to fit."""
        del verbose  # accepted for compatibility; this class never warns
        single = isinstance(texts, str)
        rows = [e.ids for e in self._tok.encode_batch([texts] if single else list(texts))]
        length = max_length or self.model_max_length
        if truncation:
            rows = [r if len(r) <= length else r[: length - 1] + [self.eos_token_id] for r in rows]
        if padding == "max_length":
            rows = [r + [self.pad_token_id] * (length - len(r)) for r in rows]
        elif padding:
            raise ValueError(f"padding={padding!r}: only False and 'max_length' are supported")
        if return_tensors == "np":
            return {"input_ids": np.asarray(rows, dtype=np.int64)}
        if return_tensors is not None:
            raise ValueError(f"return_tensors={return_tensors!r}: only 'np' is supported")
        return {"input_ids": rows[0] if single else rows}

    def tokenize(self, text: str) -> list[str]:
        """The BPE tokens of ``text`` (no BOS/EOS); a word's last token ends with ``</w>``."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``, words separated by single spaces (as transformers' CLIP tokenizer)."""
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return text.replace(_WORD_SUFFIX, " ").strip()

    def save_pretrained(self, folder: str | Path) -> Path:
        """``tokenizer.json`` + ``tokenizer_config.json``: the layout the pinned transformers writes."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "CLIPTokenizer", "bos_token": BOS, "eos_token": EOS, "pad_token": EOS,
            "unk_token": EOS, "model_max_length": self.model_max_length, "do_lower_case": True,
        }, indent=2))
        return folder
