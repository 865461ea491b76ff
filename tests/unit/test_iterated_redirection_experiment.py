"""scripts/iterated_redirection_experiment.py: the dev experiment's extra HGR passes, and that the
product's single pass is back after it."""

import importlib.util

import pytest
import torch

from helpers import REPO, redirecting_hgr
from hgr_core import guidance


def _experiment():
    spec = importlib.util.spec_from_file_location("iterated_redirection", REPO / "scripts" / "iterated_redirection_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_extra_pass_redirects_the_redirected_guidance_and_the_product_pass_is_restored():
    experiment, hgr = _experiment(), redirecting_hgr()
    torch.manual_seed(0)
    x, cond, uncond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    sigma = torch.tensor([3.0, 0.5])
    g = (cond - uncond) / -sigma.view(-1, 1, 1, 1)  # eps_c - eps_u for these denoised predictions
    once, harm_once = guidance.redirection_parts(hgr, g, sigma, x, uncond)
    twice_by_hand = once + guidance.redirection_parts(hgr, g + once, sigma, x, uncond)[0]
    single = guidance.safecfg_step(hgr, x, sigma, cond, uncond)[0]
    with experiment.iterated_redirection(2):
        twice, harm_twice = guidance.redirection_parts(hgr, g, sigma, x, uncond)
        new_cond, harm = guidance.safecfg_step(hgr, x, sigma, cond, uncond)
    assert torch.allclose(twice, twice_by_hand, atol=1e-6) and not torch.allclose(twice, once, atol=1e-4)
    assert torch.equal(harm_twice.score, harm_once.score)  # detection stays pass 1's
    assert torch.allclose(new_cond, cond - sigma.view(-1, 1, 1, 1) * twice_by_hand, atol=1e-5)
    assert torch.equal(guidance.safecfg_step(hgr, x, sigma, cond, uncond)[0], single)  # the product's pass is back
    with pytest.raises(ValueError, match="--passes must be at least 1"):
        with experiment.iterated_redirection(0):
            pass
