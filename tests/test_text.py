"""Prompt encoding: real CLIP BPE ids, empty prompt = unconditional embedding."""

import numpy as np
import pytest

import jaxvid
from jaxvid.text import default_tokenizer, encode_prompts, tokenize


def test_real_clip_bpe_ids():
    ids = tokenize(default_tokenizer(), "a red circle")
    assert ids[0, :5].tolist() == [49406, 320, 736, 7117, 49407]  # <start> a red circle <end>
    assert (ids[0, 5:] == 49407).all()


def test_encode_prompts_matches_encoder(tiny_model_dir):
    te = jaxvid.load_text_encoder(tiny_model_dir / "text_encoder")
    tok = default_tokenizer()
    emb = encode_prompts(te, tok, ["a red circle", ""])
    assert emb.shape == (2, 77, 32)
    np.testing.assert_allclose(np.asarray(emb), np.asarray(te(tokenize(tok, ["a red circle", ""])).last_hidden_state),
                               atol=1e-6)
    assert not np.allclose(np.asarray(emb[0]), np.asarray(emb[1]))


def test_prompts_must_be_strings():
    with pytest.raises(TypeError, match="strings"):
        tokenize(default_tokenizer(), [None])
