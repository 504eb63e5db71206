"""Prompt encoding: real CLIP BPE ids, empty prompt = unconditional embedding."""

import numpy as np
import pytest

import jaxvid
from tests import factories
from jaxvid.text import PromptTooLongError, check_prompts, default_tokenizer, encode_prompts, tokenize


def test_real_clip_bpe_ids():
    ids = tokenize(default_tokenizer(), "a red circle")
    assert ids[0, :5].tolist() == [49406, 320, 736, 7117, 49407]  # <start> a red circle <end>
    assert (ids[0, 5:] == 49407).all()


def test_encode_prompts_matches_encoder(tiny_model_dir):
    te = jaxvid.load_text_encoder(tiny_model_dir / "text_encoder")
    tok = default_tokenizer()
    emb = encode_prompts(te, tok, ["a red circle", ""])
    assert emb.shape == (2, 77, 32)
    # jitted vs eager: two compilations of the same float32 math may fuse and round differently.
    # Measured: 1.2e-6 on O(1) values (AMD EPYC), 0 on the dev CPU; 10x margin, relative.
    np.testing.assert_allclose(np.asarray(emb), np.asarray(te(tokenize(tok, ["a red circle", ""])).last_hidden_state),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(emb[0]), np.asarray(emb[1]))


def test_prompts_must_be_strings():
    with pytest.raises(TypeError, match="strings"):
        tokenize(default_tokenizer(), [None])


def test_long_prompts_are_refused_naming_the_dropped_words(caplog):
    tok = default_tokenizer()
    long = " ".join(["red circle"] * 37) + " purple elephant"  # 76 words: the last one does not fit
    with pytest.raises(PromptTooLongError, match="limit of 75.*drop 'elephant'"):
        tokenize(tok, long)
    with pytest.raises(PromptTooLongError):
        check_prompts(tok, ["ok", long])
    assert "longer than the specified maximum" not in caplog.text  # no misleading third-party warning
    assert tokenize(tok, " ".join(["red circle"] * 37) + " purple").shape == (1, 77)  # 75 tokens fit


@pytest.mark.parametrize("layout", ["tokenizer.json", "vocab+merges"])
def test_tokenizer_folder_layouts(tmp_path, layout):
    """Folders written by the pinned transformers' ``save_pretrained`` (``tokenizer.json`` only)
    and the older layout SD1.5 ships (``vocab.json`` + ``merges.txt``: jaxvid's bundled CLIP BPE
    files are that layout; the pinned transformers can no longer write it) both load."""
    from transformers import CLIPTokenizer

    from jaxvid.weights.errors import WeightFileError

    ref = default_tokenizer()
    if layout == "tokenizer.json":
        CLIPTokenizer.from_pretrained(str(jaxvid.text.DEFAULT_TOKENIZER_DIR)).save_pretrained(tmp_path)
        assert (tmp_path / "tokenizer.json").exists() and not (tmp_path / "vocab.json").exists()
    else:
        factories.save_tokenizer(tmp_path)
        assert {p.name for p in tmp_path.iterdir()} >= {"vocab.json", "merges.txt"}
    tok = jaxvid.load_tokenizer(tmp_path)
    text = "A Red circle, moving on a blue-ish background!"
    np.testing.assert_array_equal(tokenize(tok, text), tokenize(ref, text))
    _assert_same_as_transformers(tok, CLIPTokenizer.from_pretrained(str(tmp_path)))
    (tmp_path / "tokenizer.json").unlink(missing_ok=True)
    (tmp_path / "merges.txt").unlink(missing_ok=True)
    with pytest.raises(WeightFileError, match="no tokenizer.json"):
        jaxvid.load_tokenizer(tmp_path)


# whitespace runs, case, accents, contractions, digits, punctuation, typed special tokens,
# characters outside the vocabulary, and texts over the 77-token window
_TEXTS = ["", "a red circle", "A  Red\tcircle,\nmoving on a blue-ish background!", "café naïve ÉCOLE 123 4.5",
          "it's don't we'll I'm", "<|startoftext|> hi <|endoftext|>", "emoji 🙂 and 中文 text",
          " ".join(["red circle"] * 40), "x" * 300, "a cat's toy; (brackets) [x] {y} #tag @me"]


def _assert_same_as_transformers(tok, ref):
    """jaxvid's tokenizer (on ``tokenizers`` alone) against transformers' CLIPTokenizer: ids with
    and without padding/truncation, BPE tokens, decoded text."""
    for t in _TEXTS:
        assert tok([t])["input_ids"] == ref([t])["input_ids"], t
        kw = dict(padding="max_length", max_length=77, truncation=True, return_tensors="np")
        np.testing.assert_array_equal(tok([t], **kw)["input_ids"], ref([t], **kw)["input_ids"], err_msg=t)
        assert tok.tokenize(t) == ref.tokenize(t), t
        ids = ref(t)["input_ids"]
        assert tok.decode(ids) == ref.decode(ids) and tok.decode(ids[1:-1]) == ref.decode(ids[1:-1]), t


def test_tokenizer_without_transformers_matches_it_and_saves_a_folder_it_reads(tmp_path):
    """The bundled vocab/merges pair built into a ``tokenizers`` pipeline by jaxvid gives what
    transformers gives; the folder jaxvid writes (``tokenizer.json``) loads in transformers."""
    from transformers import CLIPTokenizer

    ref = CLIPTokenizer.from_pretrained(str(jaxvid.text.DEFAULT_TOKENIZER_DIR))
    _assert_same_as_transformers(default_tokenizer(), ref)
    default_tokenizer().save_pretrained(tmp_path)
    _assert_same_as_transformers(CLIPTokenizer.from_pretrained(str(tmp_path)), ref)
