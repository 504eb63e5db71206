"""UNet parity with diffusers for SD1-, SD2- and LCM-like configs (fp32, max abs diff <= 1e-4)."""

import numpy as np
import pytest
import torch

import jaxvid
from tests import factories
from tests.conftest import nchw_to_nhwc


@pytest.mark.parametrize("name", ["UNET_SD1", "UNET_SD2", "UNET_LCM"])
def test_unet_matches_diffusers(tmp_path, name):
    from diffusers import UNet2DConditionModel as TorchUNet

    cfg = getattr(factories, name)
    folder = factories.save_unet(tmp_path, cfg)
    ref = TorchUNet.from_pretrained(folder).eval()
    unet = jaxvid.load_unet(folder)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 16, 16, generator=g)
    ctx = torch.randn(2, 7, cfg["cross_attention_dim"], generator=g)
    t = torch.tensor([999, 37])
    cond = torch.randn(2, cfg["time_cond_proj_dim"], generator=g) if "time_cond_proj_dim" in cfg else None
    with torch.no_grad():
        want = nchw_to_nhwc(ref(x, t, ctx, timestep_cond=cond).sample)
    got = unet(
        nchw_to_nhwc(x), t.numpy(), ctx.numpy(), timestep_cond=None if cond is None else cond.numpy()
    )
    err = float(np.max(np.abs(np.asarray(got) - want)))
    assert err <= 1e-4, f"{name}: max abs diff {err}"
