"""LoRA fusion equals diffusers' ``load_lora_weights`` + ``fuse_lora`` (peft and kohya key styles)."""

import numpy as np
import pytest
import torch
from flax import nnx

import jaxvid
from jaxvid.weights.convert import param_paths
from jaxvid.weights.errors import WeightMismatchError
from tests.conftest import nchw_to_nhwc

TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
           "time_emb_proj"]


def _peft_lora(folder, tmp_path, alpha=8, rank=4):
    """A random LoRA over many module kinds, saved the way diffusers saves one."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    u = UNet2DConditionModel.from_pretrained(folder)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=TARGETS, init_lora_weights=False)
    torch.manual_seed(3)
    u.add_adapter(cfg)
    with torch.no_grad():
        for n, p in u.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.1)
    sd = get_peft_model_state_dict(u)
    StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=sd,
                                              unet_lora_adapter_metadata=u.peft_config["default"].to_dict())
    return tmp_path / "lora" / "pytorch_lora_weights.safetensors"


def _to_kohya(src, dst, alpha):
    from safetensors.numpy import load_file, save_file

    out = {}
    for k, v in load_file(src).items():
        mod, kind = k.removeprefix("unet.").rsplit(".lora_", 1)
        name = "lora_unet_" + mod.replace(".", "_")
        out[f"{name}.{'lora_down' if kind.startswith('A') else 'lora_up'}.weight"] = v
        out[f"{name}.alpha"] = np.asarray(alpha, np.float32)
    save_file(out, dst)
    return dst


def _reference(model_dir, lora_file, scale):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, safety_checker=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(lora_file.parent), weight_name=lora_file.name)
    pipe.fuse_lora(lora_scale=scale)
    return pipe.unet.eval()


# jitted: the fused and the base UNet share one compiled program (run eagerly, op by op, each
# call compiled hundreds of small programs)
_forward = nnx.jit(lambda unet, x, t, ctx: unet(x, t, ctx))


def _compare(ref, unet):
    g = torch.Generator().manual_seed(1)
    x, ctx = torch.randn(1, 4, 16, 16, generator=g), torch.randn(1, 7, 32, generator=g)
    with torch.no_grad():
        want = nchw_to_nhwc(ref(x, torch.tensor([500]), ctx).sample)
    got = np.asarray(_forward(unet, nchw_to_nhwc(x), np.array([500]), ctx.numpy()))
    return float(np.max(np.abs(got - want)))


@pytest.mark.parametrize("style", ["peft", "kohya"])
def test_lora_fuse_matches_diffusers(tiny_model_dir, tmp_path, style):
    lora = _peft_lora(tiny_model_dir / "unet", tmp_path, alpha=8)
    if style == "kohya":
        lora = _to_kohya(lora, tmp_path / "kohya.safetensors", alpha=8)
    scale = 0.7
    ref = _reference(tiny_model_dir, lora, scale)
    unet = jaxvid.load_lora(jaxvid.load_unet(tiny_model_dir / "unet"), lora, scale=scale)
    base = jaxvid.load_unet(tiny_model_dir / "unet")
    assert _compare(ref, base) > 1e-3, "the LoRA must change the output for this test to mean anything"
    assert _compare(ref, unet) <= 1e-4


def test_fused_weights_keep_their_placement(tiny_model_dir, tmp_path):
    """Fusing must not commit weights that were loaded uncommitted: with committed weights among
    uncommitted inputs, a loop that feeds a jitted step its own outputs compiles the step twice
    (seen: the demo compiled FastVideoEdit's step twice, +10 s)."""
    lora = _peft_lora(tiny_model_dir / "unet", tmp_path)
    unet = jaxvid.load_unet(tiny_model_dir / "unet")
    before = {p: v.get_value().committed for p, v in param_paths(unet).items()}
    jaxvid.load_lora(unet, lora)
    assert {p: v.get_value().committed for p, v in param_paths(unet).items()} == before
    assert not any(before.values())


def test_lora_unmapped_key_is_an_error(tiny_model_dir, tmp_path):
    from safetensors.numpy import save_file

    f = tmp_path / "bad.safetensors"
    save_file({"unet.down_blocks.9.nothing.lora_A.weight": np.zeros((2, 4), np.float32),
               "unet.down_blocks.9.nothing.lora_B.weight": np.zeros((4, 2), np.float32)}, f)
    with pytest.raises(WeightMismatchError, match="down_blocks.9.nothing"):
        jaxvid.load_lora(jaxvid.load_unet(tiny_model_dir / "unet"), f)


def test_lora_text_encoder_keys_need_text_encoder(tiny_model_dir, tmp_path):
    from safetensors.numpy import save_file

    f = tmp_path / "te.safetensors"
    save_file({"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": np.zeros((2, 32), np.float32),
               "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": np.zeros((32, 2), np.float32)}, f)
    with pytest.raises(WeightMismatchError, match="text_encoder="):
        jaxvid.load_lora(jaxvid.load_unet(tiny_model_dir / "unet"), f)
    te = jaxvid.load_text_encoder(tiny_model_dir / "text_encoder")
    jaxvid.load_lora(jaxvid.load_unet(tiny_model_dir / "unet"), f, text_encoder=te)
