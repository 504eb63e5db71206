"""DDIM / DDIM-inverse / LCM timesteps and steps equal to diffusers' schedulers."""

import numpy as np
import pytest
import torch

from jaxvid.schedulers import (
    add_noise,
    ddim_inverse_step,
    ddim_inverse_timesteps,
    ddim_step,
    ddim_timesteps,
    lcm_invert,
    lcm_step,
    lcm_timesteps,
    make_schedule,
    schedule_from_config,
)

SD = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False)


def close(a, b, tol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_schedule_matches_diffusers():
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(**SD)
    s = make_schedule()
    close(s.alphas_cumprod, ref.alphas_cumprod.numpy(), 1e-6)
    s2 = schedule_from_config(dict(ref.config))
    close(s2.final_alpha_cumprod, ref.final_alpha_cumprod.numpy(), 1e-7)


@pytest.mark.parametrize("spacing,offset", [("leading", 1), ("trailing", 0), ("linspace", 0)])
@pytest.mark.parametrize("n", [1, 4, 15, 50])
def test_ddim_timesteps(spacing, offset, n):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(**SD, timestep_spacing=spacing, steps_offset=offset)
    ref.set_timesteps(n)
    np.testing.assert_array_equal(ddim_timesteps(n, spacing=spacing, steps_offset=offset), ref.timesteps.numpy())


@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("pred", ["epsilon", "v_prediction"])
def test_ddim_steps(eta, pred):
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(**SD, steps_offset=1, set_alpha_to_one=False, prediction_type=pred)
    ref.set_timesteps(10)
    s = schedule_from_config(dict(ref.config))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    for t in ref.timesteps:
        out = torch.randn(2, 4, 8, 8, generator=g)
        noise = torch.randn(2, 4, 8, 8, generator=g)
        want = ref.step(out, t, x, eta=eta, variance_noise=noise)
        prev_t = int(t) - 1000 // 10
        got, x0 = ddim_step(s, out.numpy(), int(t), x.numpy(), prev_t, eta=eta, noise=noise.numpy())
        close(got, want.prev_sample.numpy(), 1e-4)
        close(x0, want.pred_original_sample.numpy(), 1e-4)
        x = want.prev_sample


def test_ddim_inverse():
    from diffusers import DDIMInverseScheduler

    ref = DDIMInverseScheduler(**SD, steps_offset=1, set_alpha_to_one=False)
    ref.set_timesteps(10)
    np.testing.assert_array_equal(ddim_inverse_timesteps(10), ref.timesteps.numpy())
    s = schedule_from_config(dict(ref.config))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    for t in ref.timesteps:
        out = torch.randn(1, 4, 8, 8, generator=g)
        want = ref.step(out, t, x).prev_sample
        got, _ = ddim_inverse_step(s, out.numpy(), int(t), x.numpy(), 10)
        close(got, want.numpy(), 1e-4)
        x = want


@pytest.mark.parametrize("n,orig,strength", [(1, 50, 1.0), (3, 50, 1.0), (4, 50, 1.0), (8, 50, 0.6), (15, 50, 1.0), (6, 30, 1.0)])
def test_lcm_timesteps(n, orig, strength):
    from diffusers import LCMScheduler

    ref = LCMScheduler(**SD)
    ref.set_timesteps(n, original_inference_steps=orig, strength=strength)
    np.testing.assert_array_equal(lcm_timesteps(n, original_inference_steps=orig, strength=strength), ref.timesteps.numpy())


def test_lcm_rejects_too_many_steps():
    with pytest.raises(ValueError, match="num_inference_steps"):
        lcm_timesteps(60)


def test_lcm_steps():
    from diffusers import LCMScheduler

    ref = LCMScheduler(**SD)
    ref.set_timesteps(4)
    s = schedule_from_config(dict(ref.config))
    ts = [int(t) for t in ref.timesteps]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    for i, t in enumerate(ts):
        out = torch.randn(2, 4, 8, 8, generator=g)
        # diffusers draws the re-noising noise from the generator it is given: replay it
        noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(100 + i))
        want = ref.step(out, t, x, generator=torch.Generator().manual_seed(100 + i))
        last = i == len(ts) - 1
        prev_t = ts[i + 1] if not last else t
        got, den = lcm_step(s, out.numpy(), t, x.numpy(), prev_t, noise.numpy(), is_last=last)
        close(den, want.denoised.numpy(), 1e-4)
        close(got, want.prev_sample.numpy(), 1e-4)
        x = want.prev_sample


@pytest.mark.parametrize("n", [1, 2, 4])
def test_lcm_inversion_matches_a_float64_transcription(n):
    """``lcm_invert`` (the stream's inversion and the memory objective's) against the DDIM
    inversion written out in float64 NumPy, on diffusers' own alphas, with a nonlinear stand-in
    for the UNet that depends on the timestep (so a wrong timestep or order would show)."""
    import jax.numpy as jnp
    from diffusers import LCMScheduler

    ref = LCMScheduler(**SD)
    ref.set_timesteps(n)
    alphas = ref.alphas_cumprod.numpy().astype(np.float64)
    final = float(ref.final_alpha_cumprod)
    z0 = np.random.default_rng(n).standard_normal((2, 8, 8, 4))

    def eps_np(x, t):
        return np.tanh(0.5 * x + t / 1000.0)

    x = z0.copy()
    prev = None
    for t in ref.timesteps.numpy()[::-1]:  # ascending
        a_from = final if prev is None else alphas[prev]
        eps = eps_np(x, t)
        x = np.sqrt(alphas[t]) * (x - np.sqrt(1 - a_from) * eps) / np.sqrt(a_from) + np.sqrt(1 - alphas[t]) * eps
        prev = t
    s = schedule_from_config(dict(ref.config))
    got = lcm_invert(lambda x, t: jnp.tanh(0.5 * x + t / 1000.0), s, jnp.asarray(z0, jnp.float32),
                     jnp.asarray(lcm_timesteps(n)))
    # measured: max |diff| ~1e-6 on values of order 1 (float32 vs float64)
    np.testing.assert_allclose(np.asarray(got), x, rtol=1e-4, atol=1e-5)


def test_refuses_sample_clipping():
    with pytest.raises(NotImplementedError, match="clip_sample"):
        schedule_from_config({**SD, "clip_sample": True})


def test_add_noise_matches_diffusers():
    from diffusers import DDIMScheduler

    ref = DDIMScheduler(**SD)
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([0, 500, 999])
    close(add_noise(make_schedule(), x0.numpy(), n.numpy(), t.numpy()), ref.add_noise(x0, n, t).numpy(), 1e-5)
