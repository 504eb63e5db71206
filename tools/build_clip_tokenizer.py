"""Build ``jaxvid/assets/clip_tokenizer`` (vocab.json, merges.txt) from CLIP's BPE merges file.

The merges file ``bpe_simple_vocab_16e6.txt.gz`` (OpenAI CLIP, MIT licence) ships inside the
``open_clip_torch`` wheel on PyPI. The vocabulary is derived exactly as CLIP's own tokenizer
does (256 byte symbols, the same with ``</w>``, one token per merge, two specials), which gives
the 49,408-token vocabulary of every SD 1.x text encoder.

    pip download --no-deps open_clip_torch -d /tmp/oc
    unzip -p /tmp/oc/open_clip_torch-*.whl open_clip/bpe_simple_vocab_16e6.txt.gz > /tmp/bpe.txt.gz
    python tools/build_clip_tokenizer.py /tmp/bpe.txt.gz
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "jaxvid" / "assets" / "clip_tokenizer"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def main(src: str) -> None:
    lines = gzip.open(src).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (OUT / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (OUT / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": 77,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "do_lower_case": True,
            },
            indent=2,
        )
    )
    print(f"wrote {len(vocab)} tokens, {len(merges)} merges to {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
