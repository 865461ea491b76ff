"""SafeCFG math (hgr_core.guidance), no ComfyUI needed."""

import pytest
import torch

from helpers import identity_hgr, redirecting_hgr
from hgr_core import (COMBINE_RULES, HGR, HGRConfig, combine_redirections, eps_from_denoised, harm_score, redirection,
                      redirection_parts, safecfg_denoised, safecfg_step)


def _state(batch=2, channels=4, h=8, w=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, h, w, generator=gen) * 3
    d_c = torch.randn(batch, channels, h, w, generator=gen)
    d_u = torch.randn(batch, channels, h, w, generator=gen)
    return x, torch.tensor([2.0, 0.5][:batch]), d_c, d_u


def test_eps_from_denoised_inverts_x_minus_sigma_eps():
    x, sigma, d_c, _ = _state()
    eps = eps_from_denoised(x, d_c, sigma)
    assert torch.allclose(x - sigma.view(-1, 1, 1, 1) * eps, d_c, atol=1e-5)


def test_identity_hgr_returns_the_conditional_prediction_bit_for_bit():
    x, sigma, d_c, d_u = _state()
    new_cond, score = safecfg_denoised(identity_hgr(), x, sigma, d_c, d_u)
    assert torch.equal(new_cond, d_c)
    assert torch.equal(score, torch.zeros(2))


def test_strength_zero_returns_cond_for_any_weights_but_still_scores():
    x, sigma, d_c, d_u = _state()
    new_cond, score = safecfg_denoised(redirecting_hgr(), x, sigma, d_c, d_u, strength=0.0)
    assert torch.equal(new_cond, d_c)
    assert (score > 0).all()


def test_redirected_guidance_equals_eps_u_plus_r_of_g():
    """eps_c' - eps_u equals g + s (R(g) - g), i.e. CFG on top yields eps_u + w R_s(g)."""
    hgr = redirecting_hgr()
    x, sigma, d_c, d_u = _state()
    full, _ = safecfg_denoised(hgr, x, sigma, d_c, d_u, strength=1.0)
    half, _ = safecfg_denoised(hgr, x, sigma, d_c, d_u, strength=0.5)
    g = eps_from_denoised(x, d_c, sigma) - eps_from_denoised(x, d_u, sigma)
    change_full = eps_from_denoised(x, full, sigma) - eps_from_denoised(x, d_u, sigma) - g
    change_half = eps_from_denoised(x, half, sigma) - eps_from_denoised(x, d_u, sigma) - g
    assert change_full.abs().max() > 1e-3
    assert torch.allclose(change_half, 0.5 * change_full, atol=1e-4)


def test_batch_elements_are_independent():
    hgr = redirecting_hgr()
    x, sigma, d_c, d_u = _state()
    together, _ = safecfg_denoised(hgr, x, sigma, d_c, d_u)
    alone, _ = safecfg_denoised(hgr, x[1:], sigma[1:], d_c[1:], d_u[1:])
    assert torch.allclose(together[1:], alone, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_come_back_in_their_dtype(dtype):
    x, sigma, d_c, d_u = _state()
    new_cond, score = safecfg_denoised(redirecting_hgr(), x.to(dtype), sigma, d_c.to(dtype), d_u.to(dtype))
    assert new_cond.dtype == dtype and score.dtype == torch.float32
    assert torch.isfinite(new_cond).all()


@pytest.mark.parametrize("rule", COMBINE_RULES)
def test_single_selected_category_gives_its_own_gated_delta(rule):
    delta = torch.randn(2, 2, 4, 3, 3)
    gate = torch.rand(2, 2, 3, 3)
    only_first = combine_redirections(delta, gate, torch.tensor([1.0, 0.0]), rule=rule)
    expected = gate[:, 0, None] * delta[:, 0]
    assert torch.allclose(only_first, expected, atol=1e-4)
    if rule == "sum":
        assert torch.equal(only_first, expected)


@pytest.mark.parametrize("rule", COMBINE_RULES)
def test_no_gate_on_is_exactly_the_identity(rule):
    delta = torch.randn(2, 3, 4, 3, 3)
    assert torch.equal(combine_redirections(delta, torch.rand(2, 3, 3, 3), torch.zeros(3), rule=rule), torch.zeros(2, 4, 3, 3))
    assert torch.equal(combine_redirections(delta, torch.zeros(2, 3, 3, 3), rule=rule), torch.zeros(2, 4, 3, 3))


def test_sum_rule_removes_two_active_harms_fully():
    """g = g_clean + a_1 + a_2, each category's change cancels its own a_k: the sum returns g_clean."""
    a = torch.randn(1, 2, 4, 3, 3)  # (B, K, C, H, W): each harm's contribution to g
    delta, gate = -a, torch.ones(1, 2, 3, 3)
    assert torch.allclose(combine_redirections(delta, gate, rule="sum"), -a.sum(dim=1))
    # the mean rule removes the average of the two, about half of each
    assert torch.allclose(combine_redirections(delta, gate, rule="mean"), -a.sum(dim=1) / 2, atol=1e-5)


def test_mean_rule_never_overshoots_the_targets():
    delta = torch.ones(1, 2, 1, 1, 1)
    gate = torch.ones(1, 2, 1, 1)
    assert torch.allclose(combine_redirections(delta, gate, rule="mean"), torch.ones(1, 1, 1, 1), atol=1e-5)


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="rule must be one of"):
        combine_redirections(torch.zeros(1, 1, 4, 2, 2), torch.zeros(1, 1, 2, 2), rule="max")
    with pytest.raises(ValueError, match="combine_rule must be one of"):
        HGR(HGRConfig(base_channels=16), combine_rule="max")


def test_safecfg_uses_the_hgr_s_own_rule():
    hgr = redirecting_hgr()
    x, sigma, d_c, d_u = _state()
    g = eps_from_denoised(x, d_c, sigma) - eps_from_denoised(x, d_u, sigma)
    assert hgr.combine_rule == "sum"
    changes = {}
    for rule in COMBINE_RULES:
        hgr.combine_rule = rule
        out = hgr(g, sigma, x, d_u)
        changes[rule] = redirection(hgr, g, sigma, x, d_u)
        assert torch.allclose(changes[rule], combine_redirections(out.delta, out.gate, rule=rule), atol=1e-6)
    assert not torch.allclose(changes["sum"], changes["mean"], atol=1e-4)


def test_harm_score_is_relative_distance():
    g = torch.zeros(1, 4, 2, 2)
    g[0, 0, 0, 0] = 3.0
    change = torch.zeros_like(g)
    change[0, 1, 0, 0] = 1.5
    assert harm_score(g, change).item() == pytest.approx(0.5, rel=1e-5)


def test_step_harm_per_category_scores_add_up_under_the_sum_rule_and_match_a_single_selection():

    hgr = redirecting_hgr()
    gen = torch.Generator().manual_seed(3)
    x, d_c, d_u = (torch.randn(2, 4, 8, 8, generator=gen) for _ in range(3))
    sigma = torch.tensor([2.0, 0.7])
    _, harm = safecfg_step(hgr, x, sigma, d_c, d_u)
    assert harm.score.shape == (2,) and harm.category_scores.shape == (2, 2) and harm.harm_map.shape == (2, 8, 8)
    assert bool((harm.harm_map >= 0).all() and (harm.harm_map <= 1).all())
    assert bool((harm.score <= harm.category_scores.sum(dim=1) + 1e-5).all())  # triangle inequality
    for k in range(2):
        mask = torch.zeros(2)
        mask[k] = 1
        _, alone = safecfg_step(hgr, x, sigma, d_c, d_u, category_mask=mask)
        assert torch.allclose(alone.score, harm.category_scores[:, k], rtol=1e-5)
        assert torch.allclose(alone.category_scores[:, 1 - k], torch.zeros(2))


def test_each_extra_pass_redirects_the_redirected_guidance_and_detection_stays_the_first_pass_s():
    hgr = redirecting_hgr()
    torch.manual_seed(0)
    x, cond, uncond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    sigma = torch.tensor([3.0, 0.5])
    g = (cond - uncond) / -sigma.view(-1, 1, 1, 1)  # eps_c - eps_u for these denoised predictions
    once, harm_once = redirection_parts(hgr, g, sigma, x, uncond)
    twice_by_hand = once + redirection_parts(hgr, g + once, sigma, x, uncond)[0]
    twice, harm_twice = redirection_parts(hgr, g, sigma, x, uncond, passes=2)
    assert torch.allclose(twice, twice_by_hand, atol=1e-6) and not torch.allclose(twice, once, atol=1e-4)
    assert torch.equal(harm_twice.score, harm_once.score)
    new_cond, harm = safecfg_step(hgr, x, sigma, cond, uncond, passes=2)
    assert torch.allclose(new_cond, cond - sigma.view(-1, 1, 1, 1) * twice_by_hand, atol=1e-5)
    assert torch.allclose(harm.score, harm_once.score, atol=1e-6)
    half, _ = safecfg_step(hgr, x, sigma, cond, uncond, strength=0.5, passes=2)
    assert torch.allclose(half, cond - sigma.view(-1, 1, 1, 1) * 0.5 * twice_by_hand, atol=1e-5)
    with pytest.raises(ValueError, match="passes must be between 1 and 4"):
        redirection_parts(hgr, g, sigma, x, uncond, passes=0)


def test_extra_passes_leave_guidance_the_hgr_leaves_alone_bit_for_bit():
    x, sigma, cond, uncond = _state()
    assert torch.equal(safecfg_step(identity_hgr(), x, sigma, cond, uncond, passes=3)[0], cond)
