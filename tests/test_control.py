"""FastVideoEdit's pieces against independent transcriptions and known answers: the latent update
(the released code's BCS), prompt alignment, Re-CA, blend masks on non-square grids, TokenFlow
keyframes and weights, and the step-switching rules of both profiles."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvid.control.align import align_prompts
from jaxvid.control.blend import blend_mask, released_mask
from jaxvid.control.fastvideoedit import reweighted_cross_attention
from jaxvid.control.tokenflow import neighbours, neighbours_released, pick_keyframes
from jaxvid.pipelines.fastvideoedit import FastVideoEditConfig, branch_update
from jaxvid.text import default_tokenizer


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


def bcs_released(x_s, x_t, e_s, e_t, x_0, noise, a_t, a_prev):
    """The released code's ``BCS`` (run_demo.py) with eta = 1, transcribed in NumPy float64:
    returns (prev_xs, prev_xt, pred_x0) for one of the edit/background branches."""
    beta_t, beta_prev = 1 - a_t, 1 - a_prev
    std_dev_t = 1.0 * beta_prev  # eta * variance
    noise = std_dev_t**0.5 * noise
    e_c = (x_s - a_t**0.5 * x_0) / (1 - a_t) ** 0.5
    pred_x0 = x_0 + ((x_t - x_s) - beta_t**0.5 * (e_t - e_s)) / a_t**0.5
    eps = (e_t - e_s) + e_c
    dir_xt = (beta_prev - std_dev_t) ** 0.5 * eps
    return a_prev**0.5 * x_0 + dir_xt + noise, a_prev**0.5 * pred_x0 + dir_xt + noise, pred_x0


@pytest.mark.parametrize("a_t,a_prev", [(0.0047, 0.089), (0.3, 0.7), (0.91, 0.9991)])
def test_branch_update_equals_the_released_bcs(a_t, a_prev):
    rng = np.random.default_rng(0)
    shape = (2, 3, 8, 8, 4)
    z0, zs, ze, zb, n = (rng.standard_normal(shape[1:]) for _ in range(5))
    eps = rng.standard_normal((3, *shape[1:]))  # arbitrary guided predictions of source, edit, bg
    d = np.stack([ze - zs, zb - zs])
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    zs2, d2, diff = branch_update(f32(zs), f32(d), f32(z0), f32(eps), a_t, a_prev, f32(n))
    for b, z in ((0, ze), (1, zb)):
        prev_xs, prev_xt, pred_x0 = bcs_released(zs, z, eps[0], eps[1 + b], z0, n, a_t, a_prev)
        # float32 vs float64: measured up to 6.4e-6 on values up to 96 (a_t = 0.0047: 1/sqrt(a_t) ~ 15)
        np.testing.assert_allclose(np.asarray(zs2), prev_xs, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(zs2 + d2[b]), prev_xt, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(z0 + diff[b]), pred_x0, rtol=1e-4, atol=1e-4)


def test_alignment_substitution_insertion_deletion_and_multi_token_words(tok):
    a = align_prompts(tok, "a red car on a road", "a blue car on a road")
    t = tok.tokenize("a blue car on a road")
    assert len(t) == 6
    assert a.aligned[1:7].tolist() == [True, False, True, True, True, True]  # 'blue' is new
    assert a.mapper[3] == 3 and a.edited[1:7].tolist() == [False, True, False, False, False, False]
    ins = align_prompts(tok, "a car on a road", "a shiny red car on a road")  # insertion
    assert ins.aligned[1:8].tolist() == [True, False, False, True, True, True, True]
    assert ins.mapper[4] == 2 and ins.mapper[7] == 5  # 'car' and 'road' map back by two
    dele = align_prompts(tok, "a big red car", "a car")  # deletion
    assert dele.mapper[2] == 4 and dele.aligned[1:3].all() and not dele.edited.any()
    word = "snowboarder"
    assert len(tok.tokenize(word)) >= 2  # a word CLIP splits into several tokens
    multi = align_prompts(tok, "a snowboarder with a cat", "a snowboarder with a dog")
    n = len(tok.tokenize(word))
    assert multi.aligned[2:2 + n].all() and (multi.mapper[2:2 + n] == np.arange(2, 2 + n)).all()
    assert multi.edited[4 + n] and multi.edited.sum() == 1  # only 'dog'
    # EOS and padding follow the source's
    assert multi.mapper[6 + n] == 6 + n


def test_blend_and_change_words_name_tokens(tok):
    a = align_prompts(tok, "a red circle on grass", "a blue square on grass", blend_words=["square"],
                      change_words=["red circle"])
    assert a.edited.nonzero()[0].tolist() == [3]
    assert a.change.nonzero()[0].tolist() == [2, 3]
    with pytest.raises(ValueError, match="change words .* source prompt"):
        align_prompts(tok, "a red circle", "a blue circle", change_words=["square"])


def test_reweighted_cross_attention_columns_and_scale():
    p_src = jnp.arange(12.0).reshape(2, 6) / 10
    p_edit = jnp.full((2, 6), 0.5)
    mapper = jnp.asarray([0, 1, 1, 3, 2, 5])
    aligned = jnp.asarray([True, True, False, True, True, False])
    out = np.asarray(reweighted_cross_attention(p_src, p_edit, mapper, aligned, 1.5))
    want = np.asarray(p_src)[:, [0, 1, 1, 3, 2, 5]]
    want[:, [2, 5]] = 0.75
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_paper_mask_on_a_non_square_grid():
    """A 2x3 grid upsampled to a 4x6 latent: the known hot cell lands where it belongs."""
    share = jnp.zeros((1, 6)).at[0, 5].set(1.0)  # row 1, column 2 of the grid
    m = np.asarray(blend_mask(share, (2, 3), (4, 6), 0.5))[0, ..., 0]
    assert m.shape == (4, 6) and m[2:, 4:].all() and m[:2].sum() == 0 and m[:, :3].sum() == 0
    with pytest.raises(ValueError, match="do not fill a 2x4 grid"):
        blend_mask(share, (2, 4), (4, 8), 0.5)


def test_released_mask_max_over_change_words_nearest_and_per_frame_max():
    maps = jnp.zeros((2, 6, 4))
    maps = maps.at[0, 1, 2].set(2.0).at[0, 4, 2].set(0.6).at[0, 4, 3].set(1.6)  # token 3: not a change word
    maps = maps.at[1, 0, 2].set(0.1)  # a faint frame is normalised by its own maximum
    words = jnp.asarray([False, False, True, False])
    m = np.asarray(released_mask(maps, words, (2, 3), (4, 6), 0.25))[..., 0]
    assert m[0, :2, 2:4].all() and m[0, 2:, 2:4].all() and m[0].sum() == 8  # 1.0 and 0.3 of the max
    assert m[1, :2, :2].all() and m[1].sum() == 4


def test_keyframes_one_per_group_and_neighbour_weights():
    kf = np.asarray(pick_keyframes(jax.random.key(3), 19, 8))
    assert kf.shape == (3,) and all(g * 8 <= k < min(19, g * 8 + 8) for g, k in enumerate(kf))
    keyframes, frames = jnp.asarray([2, 9, 17]), jnp.arange(20)
    before, after, w = (np.asarray(a) for a in neighbours(keyframes, frames))
    assert before[5] == 0 and after[5] == 1 and w[5] == pytest.approx(3 / 7)  # between 2 and 9
    assert before[9] == after[9] == 1 and w[9] == 0.0  # a keyframe itself
    assert before[0] == after[0] == 0 and before[19] == after[19] == 2  # outside: nearest keyframe alone
    prev, own, wr = (np.asarray(a) for a in neighbours_released(keyframes, frames, 8))
    assert own[3] == 0 and prev[3] == 0 and wr[3] == 1.0  # first group: its own keyframe only
    # frame 10 (group 1, centre 12; previous centre 4): d_own 2, d_prev 6 -> sigmoid(6/8)
    assert own[10] == 1 and prev[10] == 0 and wr[10] == pytest.approx(1 / (1 + np.exp(-0.75)))


def test_step_switching_rules_of_both_profiles():
    paper = FastVideoEditConfig(self_fraction=0.6, cross_fraction=0.7, blend_start_step=9)
    released = dataclasses.replace(paper, profile="released", change_words=("x",))
    p, r = paper.phases(), released.phases()
    assert p["early"].sum() == 9 and r["early"].sum() == 8  # round(9.0) vs (i+1)/15 < 0.6
    assert p["cross_on"].sum() == r["cross_on"].sum() == 10
    assert p["blend_on"].nonzero()[0][0] == 8 == r["blend_on"].nonzero()[0][0]
    t_bg = dataclasses.replace(paper, bg_fraction=0.2).phases()
    assert t_bg["bg_early"].sum() == 3 and t_bg["early"].sum() == 9  # the paper's separate t_bg
    with pytest.raises(ValueError, match="change_words"):
        dataclasses.replace(paper, profile="released")
