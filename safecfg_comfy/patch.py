"""Install SafeCFG on a ComfyUI model.

The node `SafeCFGApply`, the training previews and the benchmarks all call `patch_model`.
It clones the ModelPatcher and installs a stateless pre-CFG closure around `safecfg_denoised`
that replaces the conditional prediction; ComfyUI's own CFG (and any cfg/post-CFG patch applied
afterwards) then yields eps_u + w * R_s(g). `guards.install` adds the checks that refuse, with
an error naming the node to change, the guidance paths on which that hook cannot act.
"""

from __future__ import annotations

import contextlib

import torch

from . import guards
from ._core import hgr_core
from .compat import ALL_CATEGORIES, category_mask, check_compatible
from .hgr_patcher import attach_hgr

HGR = hgr_core.HGR
safecfg_step = hgr_core.safecfg_step
MAX_PASSES = hgr_core.MAX_PASSES

__all__ = ["ALL_CATEGORIES", "MAX_PASSES", "category_mask", "check_compatible", "make_pre_cfg_hook", "patch_model"]


def make_pre_cfg_hook(hgr: HGR, strength: float, sigma_start: float, sigma_end: float, mask: torch.Tensor, on_score=None,
                      record_scores: bool = True, differentiable: bool = False, passes: int = 1):
    """A stateless closure for set_model_sampler_pre_cfg_function (clone deep-copies it cheaply).

    on_score(sigma, harm) is called with each redirected step's `hgr_core.StepHarm`. With
    record_scores, the run's steps are also kept for `SafeCFGSamplingScore` (`guards.record_harm`),
    so the HGR runs even at strength 0. Every call is reported to the guards
    (`guards.record_hook_call`), inside the sigma window or not; inside it a skipped branch (zeros)
    is refused, never redirected against. differentiable: the HGR's step keeps autograd's graph (for
    an attacker back-propagating through sampling, `benchmarks.attack_adaptive`); otherwise it runs
    without one. passes: HGR applications per step (`hgr_core.redirection_parts`).
    """
    skip_network = strength == 0 and on_score is None and not record_scores

    def safecfg_pre_cfg(args):
        guards.record_hook_call(args["model_options"])
        conds_out = args["conds_out"]
        sigma, x = args["sigma"], args["input"]
        active = (sigma <= sigma_start) & (sigma >= sigma_end)
        if not bool(active.any()):
            return conds_out
        guards.check_conds(args["conds"], conds_out, sigma, active)
        if skip_network:
            return conds_out
        with contextlib.nullcontext() if differentiable else torch.no_grad():
            cond, harm = safecfg_step(hgr, x, sigma, conds_out[0], conds_out[1], strength, mask.to(x.device), passes)
        if on_score is not None:
            on_score(sigma, harm)
        if record_scores:
            guards.record_harm(args["model_options"], safecfg_pre_cfg, hgr, sigma, harm)
        cond = torch.where(active.view(-1, *([1] * (cond.ndim - 1))).to(x.device), cond, conds_out[0])
        return [cond, *conds_out[1:]]

    return guards.mark_hook(safecfg_pre_cfg)


def patch_model(model, hgr: HGR, strength: float = 1.0, start_percent: float = 0.0, end_percent: float = 1.0,
                categories: str = ALL_CATEGORIES, on_score=None, record_scores: bool = True,
                differentiable: bool = False, passes: int = 1):
    """A clone of a ComfyUI ModelPatcher that samples with SafeCFG; the input model is untouched.

    record_scores: keep each output image's harm score for `SafeCFGSamplingScore` (`sampling_scores`).
    differentiable: gradients flow through the redirection (`make_pre_cfg_hook`).
    passes: HGR applications per step (`hgr_core.redirection_parts`); 2 removes more of what one pass
    leaves, at some cost in clean change (README, toy world v2).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    if not 1 <= passes <= MAX_PASSES:
        raise ValueError(f"passes must be between 1 and {MAX_PASSES}, got {passes}")
    if start_percent > end_percent:
        raise ValueError(f"start_percent ({start_percent}) must not exceed end_percent ({end_percent})")
    check_compatible(model, hgr)
    sampling = model.get_model_object("model_sampling")
    hook = make_pre_cfg_hook(
        hgr, strength,
        sigma_start=float(sampling.percent_to_sigma(start_percent)),
        sigma_end=float(sampling.percent_to_sigma(end_percent)),
        mask=category_mask(hgr, categories), on_score=on_score, record_scores=record_scores,
        differentiable=differentiable, passes=passes,
    )
    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(hook, disable_cfg1_optimization=True)
    guards.install(patched, hook, hgr)  # refuse guidance paths on which the hook cannot act
    attach_hgr(patched, hgr)  # ComfyUI loads, counts and offloads the HGR with the UNet; the hook never moves it
    return patched
