"""CLIP video metrics: preprocessing and embeddings equal to transformers, metric values on
constructed inputs with known answers."""

import numpy as np
import pytest
import torch

from jaxvid.metrics.clip import ClipPreprocess, ClipScorer, clip_accuracy, temporal_consistency, text_similarity
from tests import factories


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random transformers CLIPModel folder with its image processor and tokenizer."""
    from transformers import CLIPImageProcessorPil, CLIPTokenizer

    from jaxvid.text import DEFAULT_TOKENIZER_DIR

    folder = factories.save_clip(tmp_path_factory.mktemp("clip"))
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    CLIPTokenizer.from_pretrained(str(DEFAULT_TOKENIZER_DIR)).save_pretrained(folder)
    return folder


def _frames(n, h, w, seed=0):
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(300, 200), (97, 131), (32, 32)])
def test_preprocessing_equals_transformers(shape):
    from transformers import CLIPImageProcessorPil

    frames = _frames(2, *shape)
    ref = CLIPImageProcessorPil()(list(frames), return_tensors="np")["pixel_values"].transpose(0, 2, 3, 1)
    got = ClipPreprocess()(frames)
    assert got.shape == ref.shape == (2, 224, 224, 3)
    np.testing.assert_allclose(got, ref, atol=1e-5)  # measured: 4.8e-7 (float32 rounding of the same ops)


def test_embeddings_and_metrics_equal_transformers_clip(clip_dir):
    from transformers import CLIPImageProcessorPil, CLIPModel

    from jaxvid.text import tokenize

    scorer = ClipScorer(clip_dir, batch=4)
    ref = CLIPModel.from_pretrained(clip_dir).eval()
    frames = _frames(6, 40, 56)
    src, tgt = "a red circle", "a blue square"
    with torch.no_grad():
        px = CLIPImageProcessorPil.from_pretrained(clip_dir)(list(frames), return_tensors="pt")["pixel_values"]
        img = ref.get_image_features(pixel_values=px).pooler_output  # transformers 5: projected, in pooler_output
        img = (img / img.norm(dim=-1, keepdim=True)).numpy()
        ids = torch.from_numpy(tokenize(scorer.tokenizer, [tgt, src]).astype(np.int64))
        txt = ref.get_text_features(input_ids=ids).pooler_output
        txt = (txt / txt.norm(dim=-1, keepdim=True)).numpy()
    got = scorer.image_embeddings(frames)
    np.testing.assert_allclose(got, img, atol=1e-5)  # measured: 3e-7 on unit vectors
    np.testing.assert_allclose(scorer.text_embeddings([tgt, src]), txt, atol=1e-5)
    m = scorer.video_metrics(frames, tgt, src)
    assert m["tem_con"] == pytest.approx(float(np.mean(np.sum(img[1:] * img[:-1], -1))), abs=1e-5)
    assert m["txt_sim"] == pytest.approx(float(100 * np.mean(img @ txt[0])), abs=1e-3)
    assert m["clip_acc"] == pytest.approx(float(np.mean(img @ txt[0] > img @ txt[1])))


def test_metric_values_on_constructed_inputs():
    e = np.tile(np.asarray([[0.6, 0.8, 0.0]]), (5, 1))
    assert temporal_consistency(e) == pytest.approx(1.0)  # identical frames
    alternating = np.asarray([[1.0, 0, 0], [0, 1.0, 0]] * 3)
    assert temporal_consistency(alternating) == pytest.approx(0.0)  # orthogonal neighbours
    target, source = np.asarray([1.0, 0, 0]), np.asarray([0, 1.0, 0])
    near_target = np.asarray([[0.9, 0.1, 0.0], [0.7, 0.3, 0.1]])
    near_target /= np.linalg.norm(near_target, axis=-1, keepdims=True)
    assert clip_accuracy(near_target, target, source) == 1.0
    assert clip_accuracy(near_target, source, target) == 0.0
    assert text_similarity(np.asarray([[1.0, 0, 0]]), target) == pytest.approx(100.0)
