"""VAE, tiny autoencoder and CLIP (text + vision + projections) parity with the PyTorch references."""

import numpy as np
import pytest
import torch

import jaxvid
from jaxvid.text import default_tokenizer, tokenize
from tests import factories
from tests.conftest import nchw_to_nhwc


def maxdiff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def test_vae_encode_decode(tmp_path):
    from diffusers import AutoencoderKL

    folder = factories.save_vae(tmp_path)
    ref = AutoencoderKL.from_pretrained(folder).eval()
    vae = jaxvid.load_vae(folder)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        dist = ref.encode(x).latent_dist
        z = dist.mean
        dec = ref.decode(z).sample
    got = vae.encode(nchw_to_nhwc(x))
    assert maxdiff(got.mean, nchw_to_nhwc(dist.mean)) <= 1e-4
    assert maxdiff(got.logvar, nchw_to_nhwc(dist.logvar)) <= 1e-4
    assert maxdiff(vae.decode(nchw_to_nhwc(z)), nchw_to_nhwc(dec)) <= 1e-4
    assert vae.config.scaling_factor == ref.config.scaling_factor


def test_vae_deprecated_attention_names(tmp_path):
    """Checkpoints like the SD1.5 release name the VAE attention query/key/value/proj_attn."""
    from safetensors.numpy import load_file, save_file

    folder = factories.save_vae(tmp_path)
    f = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(f)
    old = {
        k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.").replace(
            ".to_out.0.", ".proj_attn."
        ): v
        for k, v in sd.items()
    }
    assert old.keys() != sd.keys()
    save_file(old, f)
    vae = jaxvid.load_vae(folder)
    x = np.zeros((1, 32, 32, 3), np.float32)
    assert np.isfinite(np.asarray(vae.encode(x).mean)).all()


def test_tiny_vae(tmp_path):
    from diffusers import AutoencoderTiny

    folder = factories.save_tiny_vae(tmp_path)
    ref = AutoencoderTiny.from_pretrained(folder).eval()
    tae = jaxvid.load_tiny_vae(folder)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        z = ref.encode(x).latents
        dec = ref.decode(z).sample
    assert maxdiff(tae.encode(nchw_to_nhwc(x)), nchw_to_nhwc(z)) <= 1e-4
    assert maxdiff(tae.decode(nchw_to_nhwc(z)), nchw_to_nhwc(dec)) <= 1e-4


@pytest.mark.parametrize("eos_token_id", [49407, 2])
def test_clip_text(tmp_path, eos_token_id):
    from transformers import CLIPTextModel

    folder = factories.save_text_encoder(tmp_path, eos_token_id=eos_token_id)
    ref = CLIPTextModel.from_pretrained(folder).eval()
    enc = jaxvid.load_text_encoder(folder)
    ids = tokenize(default_tokenizer(), ["a red circle moving on a blue background", ""])
    with torch.no_grad():
        out = ref(torch.from_numpy(ids).long())
    got = enc(ids)
    assert maxdiff(got.last_hidden_state, out.last_hidden_state.numpy()) <= 1e-4
    assert maxdiff(got.pooler_output, out.pooler_output.numpy()) <= 1e-4


def test_clip_vision_and_projections(tmp_path):
    from transformers import CLIPModel

    folder = factories.save_clip(tmp_path)
    ref = CLIPModel.from_pretrained(folder).eval()
    clip = jaxvid.load_clip(folder)
    px = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ids = tokenize(default_tokenizer(), ["a photo of a cat", "a dog"])
    with torch.no_grad():
        vis = ref.vision_model(pixel_values=px)
        img = ref.visual_projection(vis.pooler_output)
        txt = ref.text_projection(ref.text_model(torch.from_numpy(ids).long()).pooler_output)
    got_vis = clip.vision_model(nchw_to_nhwc(px))
    assert maxdiff(got_vis.last_hidden_state, vis.last_hidden_state.numpy()) <= 1e-4
    assert maxdiff(got_vis.pooler_output, vis.pooler_output.numpy()) <= 1e-4
    assert maxdiff(clip.get_image_features(nchw_to_nhwc(px)), img.numpy()) <= 1e-4
    assert maxdiff(clip.get_text_features(ids), txt.numpy()) <= 1e-4
    assert maxdiff(clip.logit_scale[...], ref.logit_scale.detach().numpy()) <= 1e-6
