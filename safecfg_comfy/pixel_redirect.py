"""Trivial redirection baselines installed on a ComfyUI model: `apply_pixel_redirect`.

A benchmark control, not a product feature: a rule that says, per latent pixel and step, whether
the guidance points at harm (`fires`), and a pre-CFG hook that zeroes or reverses the guidance
where it does. If such a rule matched SafeCFG, the yardstick would be too easy (issue 13).

`fires(x, sigma, cond_denoised, uncond_denoised)` receives model-space tensors (B, C, H, W) and
sigma (B,) and returns a bool mask (B, 1, H, W); `on_fire_score`, if given, receives each call's
per-sample score tensor (B,) from `fires.score` when the rule provides one (detection).

Modes: "zero" sets D_c = D_u where the rule fires (no guidance there), "reverse" sets
D_c = 2 D_u - D_c (CFG then pushes away from the prompt there, like a negative prompt).
"""

from __future__ import annotations

import torch

MODES = ("zero", "reverse")


def redirect_cond(cond: torch.Tensor, uncond: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The conditional prediction with the guidance removed or reversed where ``mask`` is True."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    replaced = uncond if mode == "zero" else 2 * uncond - cond
    return torch.where(mask, replaced, cond)


def apply_pixel_redirect(model, fires, mode: str = "zero", on_score=None):
    """A clone of ``model`` whose CFG guidance is zeroed or reversed wherever ``fires`` says so."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    def pixel_redirect_pre_cfg(args):
        conds_out = args["conds_out"]
        if len(conds_out) < 2 or conds_out[1] is None:
            return conds_out
        cond, uncond = conds_out[0], conds_out[1]
        mask = fires(args["input"], args["sigma"], cond, uncond)
        if on_score is not None and hasattr(fires, "last_score"):
            on_score(fires.last_score)
        return [redirect_cond(cond, uncond, mask, mode), *conds_out[1:]]

    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(pixel_redirect_pre_cfg, disable_cfg1_optimization=True)
    return patched
