"""Weight files: formats, variants, round trip, and readable errors for bad folders/files."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxvid
from jaxvid.models.unet import UNet2DConditionModel, UNetConfig
from jaxvid.weights.convert import param_paths
from jaxvid.weights.errors import WeightFileError, WeightMismatchError
from jaxvid.models.build import abstract_model


# jitted: run eagerly, op by op, the bf16 UNet alone took ~40 s of the suite; models of one
# structure and dtype share the compiled program
_forward = nnx.jit(lambda unet, x, ctx: unet(x, 10, ctx))


def _out(unet, seed=0):
    k = jax.random.split(jax.random.key(seed), 2)
    x = jax.random.normal(k[0], (1, 16, 16, 4))
    ctx = jax.random.normal(k[1], (1, 7, 32))
    return np.asarray(_forward(unet, x, ctx))


def test_save_load_round_trip_and_torch_reads_it(tiny_unet_dir, tmp_path):
    from diffusers import UNet2DConditionModel as TorchUNet

    unet = jaxvid.load_unet(tiny_unet_dir)
    jaxvid.save_model(unet, tmp_path / "saved")
    again = jaxvid.load_unet(tmp_path / "saved")
    for (p, a), (_, b) in zip(sorted(param_paths(unet).items()), sorted(param_paths(again).items()), strict=True):
        np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value()), err_msg=p)
    # the saved folder is a valid diffusers folder with identical tensors
    import torch
    from safetensors.torch import load_file

    ref = TorchUNet.from_pretrained(tmp_path / "saved")
    orig = load_file(tiny_unet_dir / "diffusion_pytorch_model.safetensors")
    for k, v in ref.state_dict().items():
        assert torch.equal(v, orig[k]), k


def test_round_trip_text_encoder_and_vae(tiny_model_dir, tmp_path):
    te = jaxvid.load_text_encoder(tiny_model_dir / "text_encoder")
    jaxvid.save_model(te, tmp_path / "te")
    te2 = jaxvid.load_text_encoder(tmp_path / "te")
    ids = np.array([[49406, 320, 49407] + [49407] * 4])
    np.testing.assert_array_equal(np.asarray(te(ids).last_hidden_state), np.asarray(te2(ids).last_hidden_state))
    vae = jaxvid.load_vae(tiny_model_dir / "vae")
    jaxvid.save_model(vae, tmp_path / "vae")
    jaxvid.load_vae(tmp_path / "vae")


def test_fp16_variant_found_alone_and_by_name(tiny_unet_dir, tmp_path):
    from diffusers import UNet2DConditionModel as TorchUNet
    import torch

    ref = TorchUNet.from_pretrained(tiny_unet_dir).to(torch.float16)
    only = tmp_path / "only_fp16"
    ref.save_pretrained(only, variant="fp16")
    assert [p.name for p in only.glob("*.safetensors")] == ["diffusion_pytorch_model.fp16.safetensors"]
    a = jaxvid.load_unet(only)  # found automatically, upcast to the fp32 param dtype
    assert a.conv_in.kernel.dtype == jnp.float32
    both = tmp_path / "both"
    shutil.copytree(tiny_unet_dir, both)
    shutil.copy(only / "diffusion_pytorch_model.fp16.safetensors", both)
    b = jaxvid.load_unet(both, variant="fp16")
    np.testing.assert_array_equal(np.asarray(a.conv_in.kernel[...]), np.asarray(b.conv_in.kernel[...]))
    c = jaxvid.load_unet(both)  # the fp32 file is preferred when no variant is asked for
    assert not np.array_equal(np.asarray(a.conv_in.kernel[...]), np.asarray(c.conv_in.kernel[...]))
    with pytest.raises(WeightFileError, match="bf16"):
        jaxvid.load_unet(both, variant="bf16")


def test_bf16_params(tiny_unet_dir):
    unet = jaxvid.load_unet(tiny_unet_dir, dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    assert unet.conv_in.kernel.dtype == jnp.bfloat16
    out = _out(unet)
    ref = _out(jaxvid.load_unet(tiny_unet_dir))
    assert out.dtype == jnp.bfloat16 and np.isfinite(out.astype(np.float32)).all()
    assert np.max(np.abs(out.astype(np.float32) - ref)) < 0.1 * (np.abs(ref).max() + 1)


def _write_flax_msgpack(unet, path):
    """diffusers-era Flax layout: nested dicts, list members named ``down_blocks_0``, NNX-shaped arrays."""
    from flax import serialization

    tree: dict = {}
    for p, var in param_paths(unet).items():
        parts = p.split(".")
        merged = []
        for part in parts:
            if part.isdigit():
                merged[-1] = f"{merged[-1]}_{part}"
            else:
                merged.append(part)
        node = tree
        for part in merged[:-1]:
            node = node.setdefault(part, {})
        node[merged[-1]] = np.asarray(var.get_value())
    path.write_bytes(serialization.msgpack_serialize(tree))


def test_flax_msgpack(tiny_unet_dir, tmp_path):
    unet = jaxvid.load_unet(tiny_unet_dir)
    folder = tmp_path / "flax"
    folder.mkdir()
    shutil.copy(tiny_unet_dir / "config.json", folder)
    _write_flax_msgpack(unet, folder / "diffusion_flax_model.msgpack")
    np.testing.assert_array_equal(_out(jaxvid.load_unet(folder)), _out(unet))


def test_pytorch_bin(tiny_unet_dir, tmp_path):
    from diffusers import UNet2DConditionModel as TorchUNet

    TorchUNet.from_pretrained(tiny_unet_dir).save_pretrained(tmp_path / "bin", safe_serialization=False)
    assert list((tmp_path / "bin").glob("*.bin"))
    np.testing.assert_array_equal(_out(jaxvid.load_unet(tmp_path / "bin")), _out(jaxvid.load_unet(tiny_unet_dir)))


def test_missing_folder_and_files(tmp_path, tiny_unet_dir):
    with pytest.raises(WeightFileError, match="not found"):
        jaxvid.load_unet(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightFileError, match="no config.json"):
        jaxvid.load_unet(empty)
    shutil.copy(tiny_unet_dir / "config.json", empty)
    with pytest.raises(WeightFileError, match="no weights file"):
        jaxvid.load_unet(empty)


def test_truncated_file(tiny_unet_dir, tmp_path):
    folder = tmp_path / "trunc"
    shutil.copytree(tiny_unet_dir, folder)
    f = folder / "diffusion_pytorch_model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(WeightFileError, match="truncated"):
        jaxvid.load_unet(folder)


def test_misshaped_missing_and_unmapped_keys(tiny_unet_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "bad"
    shutil.copytree(tiny_unet_dir, folder)
    f = folder / "diffusion_pytorch_model.safetensors"
    sd = load_file(f)
    sd["conv_in.weight"] = sd["conv_in.weight"][:, :, :2]
    del sd["conv_out.bias"]
    sd["extra.layer.weight"] = np.zeros(3, np.float32)
    save_file(sd, f)
    with pytest.raises(WeightMismatchError) as e:
        jaxvid.load_unet(folder)
    msg = str(e.value)
    assert "conv_in.weight: (32, 4, 2, 3) -> (32, 4, 3, 3)" in msg
    assert "conv_out.bias" in msg and "extra.layer.weight" in msg


def test_unsupported_architecture_is_refused(tiny_unet_dir, tmp_path):
    folder = tmp_path / "sdxl_like"
    shutil.copytree(tiny_unet_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["addition_embed_type"] = "text_time"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NotImplementedError, match="addition_embed_type"):
        jaxvid.load_unet(folder)


def test_load_pipeline(tiny_model_dir, tmp_path):
    b = jaxvid.load_pipeline(tiny_model_dir)
    assert b.vae_scale == 2 and b.tokenizer is not None
    assert float(b.schedule.final_alpha_cumprod) == 1.0  # LCMScheduler's set_alpha_to_one
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(WeightFileError, match="vae"):
        jaxvid.load_pipeline(broken)


def _sd15_config() -> dict:
    return {
        "_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }


def test_loading_twice_gives_independent_models(tiny_unet_dir):
    """The second load reuses the first one's traced module structure (a per-process cache):
    the two models must still share no parameter."""
    a, b = jaxvid.load_unet(tiny_unet_dir), jaxvid.load_unet(tiny_unet_dir)
    assert a.conv_in.kernel is not b.conv_in.kernel
    before = np.asarray(b.conv_in.kernel.get_value())
    a.conv_in.kernel.set_value(a.conv_in.kernel.get_value() + 1.0)
    np.testing.assert_array_equal(np.asarray(b.conv_in.kernel.get_value()), before)
    np.testing.assert_array_equal(np.asarray(jaxvid.load_unet(tiny_unet_dir).conv_in.kernel.get_value()), before)


def test_loading_the_built_in_model_compiles_nothing_and_skips_transformers(tmp_path):
    """Start-up: a fresh process loads the built-in model (LoRA fused) without compiling a single
    XLA program (empty compilation cache) and without importing transformers."""
    script = (
        "import json, sys\n"
        "from jax import monitoring\n"
        "n = [0]\n"
        "monitoring.register_event_duration_secs_listener(\n"
        "    lambda event, secs, **kw: n.__setitem__(0, n[0] + (event == '/jax/core/compile/backend_compile_duration')))\n"
        "from jaxvid.pipelines.default import default_bundle\n"
        "default_bundle()\n"
        "print(json.dumps({'compiled': n[0], 'transformers': 'transformers' in sys.modules}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_COMPILATION_CACHE")}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert json.loads(r.stdout.decode().strip().splitlines()[-1]) == {"compiled": 0, "transformers": False}


def test_full_sd15_parameter_count_without_allocating():
    cfg = UNetConfig.from_dict(_sd15_config())
    unet = abstract_model(lambda r: UNet2DConditionModel(cfg, rngs=r))
    leaves = [v for v in param_paths(unet).values()]
    assert all(isinstance(v.get_value(), jax.ShapeDtypeStruct) for v in leaves)
    assert sum(int(np.prod(v.shape)) for v in leaves) == 859_520_964
    n_transformers = sum(1 for p in param_paths(unet) if p.endswith("proj_in.kernel"))
    assert n_transformers == 16
    out = jax.eval_shape(
        lambda x, c: UNet2DConditionModel(cfg, rngs=nnx.Rngs(0))(x, 999, c),
        jax.ShapeDtypeStruct((2, 64, 64, 4), jnp.float32),
        jax.ShapeDtypeStruct((2, 77, 768), jnp.float32),
    )
    assert out.shape == (2, 64, 64, 4)


def test_full_sd15_parameter_count_matches_diffusers():
    import torch
    from diffusers import UNet2DConditionModel as TorchUNet

    with torch.device("meta"):
        ref = TorchUNet.from_config(_sd15_config())
    assert sum(p.numel() for p in ref.parameters()) == 859_520_964


def test_sharded_safetensors(tiny_unet_dir, tmp_path):
    from diffusers import UNet2DConditionModel as TorchUNet

    TorchUNet.from_pretrained(tiny_unet_dir).save_pretrained(tmp_path / "sharded", max_shard_size="200KB")
    assert list((tmp_path / "sharded").glob("*.safetensors.index.json"))
    assert len(list((tmp_path / "sharded").glob("*-of-*.safetensors"))) > 1
    np.testing.assert_array_equal(_out(jaxvid.load_unet(tmp_path / "sharded")), _out(jaxvid.load_unet(tiny_unet_dir)))


@pytest.mark.slow
def test_full_sd15_random_checkpoint_round_trip(tmp_path):
    """A full-size random SD1.5 UNet saved by diffusers loads through jaxvid, matches its output at
    a small latent size, and saves back to identical tensors."""
    import torch
    from diffusers import UNet2DConditionModel as TorchUNet
    from safetensors.numpy import load_file

    torch.manual_seed(0)
    ref = TorchUNet(**{k: v for k, v in _sd15_config().items() if k != "_class_name"}).eval()
    ref.save_pretrained(tmp_path / "unet")
    unet = jaxvid.load_unet(tmp_path / "unet")
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 4, 32, 32, generator=g), torch.randn(1, 77, 768, generator=g)
    with torch.no_grad():
        want = ref(x, torch.tensor([999]), ctx).sample.numpy().transpose(0, 2, 3, 1)
    got = np.asarray(unet(x.numpy().transpose(0, 2, 3, 1), 999, ctx.numpy()))
    assert np.max(np.abs(got - want)) <= 1e-3  # 860M params, fp32 sums over long reductions
    del ref
    jaxvid.save_model(unet, tmp_path / "again")
    a = load_file(tmp_path / "unet" / "diffusion_pytorch_model.safetensors")
    b = load_file(tmp_path / "again" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
