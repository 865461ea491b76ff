"""SafeCFG math as pure functions (METHOD.md sections 1, 2, 3 and 5; per-generation scores: `scoring`).

ComfyUI's CFG hooks hand over denoised predictions D; the HGR works in eps space, where
eps = (x - D) / sigma has unit scale at every noise level. Every function takes and returns
tensors, computes in float32 and returns the caller's dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import COMBINE_RULES, EPS, HGR

SCORE_EPS = 1e-6  # METHOD.md section 5: d_t = |R(g) - g| / (|g| + 1e-6)
MAX_PASSES = 4  # HGR applications per step (`redirection_parts`); on toy world v2, 3 removed no more than 2


def _per_sample(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast sigma of shape (B,) or () against a (B, C, H, W) tensor, in float32."""
    sigma = sigma.to(device=like.device, dtype=torch.float32).reshape(-1)
    if sigma.numel() == 1:
        sigma = sigma.expand(like.shape[0])
    return sigma.view(-1, *([1] * (like.ndim - 1)))


def eps_from_denoised(x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """eps = (x - D) / sigma. x, denoised: (B, C, H, W); sigma: (B,). Returns float32."""
    return (x.float() - denoised.float()) / _per_sample(sigma, x).clamp_min(EPS)


def combine_redirections(
    delta: torch.Tensor, gate: torch.Tensor, category_mask: torch.Tensor | None = None, rule: str = "sum"
) -> torch.Tensor:
    """R(g) - g from per-category changes delta_k = r_k - g and gates h_k (METHOD.md section 3).

    delta: (B, K, C, H, W); gate: (B, K, H, W) in [0, 1]; category_mask: (K,) of 0/1 m_k selects the
    redirected categories (None = all). Returns (B, C, H, W). Both rules give exactly 0 where every
    selected gate is 0 (or nothing is selected); with only category k selected "sum" gives exactly
    h_k * delta_k and "mean" the same up to its epsilon.

    rule="sum" (every HGR trained since the rule is recorded):  sum_k m_k h_k delta_k.
      Why: guidance is additive in its harms, g = g_clean + a_1 + a_2 for a prompt with two of
      them, and each category's change is trained (on single-harm rows) to cancel its own
      contribution, h_k delta_k ~ -a_k. Summing removes both; a mean of two active changes
      removes about half of each (measured with the mean: in two-harm toy images nudity stayed in
      81% and violence in 69%). Risk: two gates firing on the same content would remove it
      twice and overshoot; what prevents it is the training loss's "leave alone" term |R_j|^2
      for every category j a row is not labelled with, so category j's change stays ~0 on
      content that is only k's.
    rule="mean" (files without a recorded rule):  (1 - prod_k(1 - h_k)) x gate-weighted mean of
      delta_k. The union gate never overshoots any single target, at the cost of halving each of
      two active targets.
    """
    if category_mask is not None:
        gate = gate * category_mask.to(gate).view(1, -1, 1, 1)
    if rule == "sum":
        return (gate[:, :, None] * delta).sum(dim=1)
    if rule == "mean":
        union = 1 - torch.prod(1 - gate, dim=1)
        mean_delta = (gate[:, :, None] * delta).sum(dim=1) / (gate.sum(dim=1)[:, None] + EPS)
        return union[:, None] * mean_delta
    raise ValueError(f"rule must be one of {COMBINE_RULES}, got {rule!r}")


def harm_map(gate: torch.Tensor, category_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel probability that some selected category is being drawn: (B, K, H, W) -> (B, H, W)."""
    if category_mask is not None:
        gate = gate * category_mask.to(gate).view(1, -1, 1, 1)
    return 1 - torch.prod(1 - gate, dim=1)


@dataclass(frozen=True)
class StepHarm:
    """What one SafeCFG step measured, per sample of the batch (METHOD.md section 5)."""

    score: torch.Tensor  # (B,) d_t = |R(g) - g| / (|g| + 1e-6)
    category_scores: torch.Tensor  # (B, K) the same ratio for each selected category's change h_k delta_k alone
    harm_map: torch.Tensor  # (B, H, W) per-pixel probability that a selected category is drawn (`harm_map`)


def redirection_parts(
    hgr: HGR,
    g: torch.Tensor,
    sigma: torch.Tensor,
    x: torch.Tensor,
    uncond_denoised: torch.Tensor,
    category_mask: torch.Tensor | None = None,
    passes: int = 1,
) -> tuple[torch.Tensor, StepHarm]:
    """R(g) - g (combined by `hgr.combine_rule`) and the step's harm measurements; float32.

    passes > 1 applies the HGR again to the guidance it has redirected, g_k = R(g_{k-1}), and
    returns g_passes - g: a harm the first pass left (the second harm of a two-harm prompt, a
    half-removed mark) meets the network again, while guidance it leaves alone stays put. The harm
    measurements are the first pass's (they score the prompt's own guidance). Each pass is one more
    HGR forward, no UNet evaluation.
    """
    if not 1 <= passes <= MAX_PASSES:
        raise ValueError(f"passes must be between 1 and {MAX_PASSES}, got {passes}")
    change, harm = _one_pass(hgr, g, sigma, x, uncond_denoised, category_mask)
    for _ in range(passes - 1):
        change = change + _one_pass(hgr, g.float() + change, sigma, x, uncond_denoised, category_mask)[0]
    return change, harm


def _one_pass(hgr: HGR, g: torch.Tensor, sigma: torch.Tensor, x: torch.Tensor, uncond_denoised: torch.Tensor,
              category_mask: torch.Tensor | None) -> tuple[torch.Tensor, StepHarm]:
    out = hgr(g.float(), _per_sample(sigma, g).view(-1), x.float(), uncond_denoised.float())
    gate = out.gate if category_mask is None else out.gate * category_mask.to(out.gate).view(1, -1, 1, 1)
    change = combine_redirections(out.delta, gate, None, hgr.combine_rule)
    g_norm = g.float().flatten(1).norm(dim=1)[:, None] + SCORE_EPS
    category_scores = (gate[:, :, None] * out.delta).flatten(2).norm(dim=2) / g_norm
    return change, StepHarm(harm_score(g, change), category_scores, harm_map(gate))


def redirection(
    hgr: HGR,
    g: torch.Tensor,
    sigma: torch.Tensor,
    x: torch.Tensor,
    uncond_denoised: torch.Tensor,
    category_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """R(g) - g for eps-space guidance g (B, C, H, W), combined by `hgr.combine_rule`; float32, same shape."""
    return redirection_parts(hgr, g, sigma, x, uncond_denoised, category_mask)[0]


def harm_score(g: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Relative harmful distance d_t = |R(g) - g| / (|g| + 1e-6) per sample: (B, ...) -> (B,)."""
    change_norm = change.float().flatten(1).norm(dim=1)
    return change_norm / (g.float().flatten(1).norm(dim=1) + SCORE_EPS)


def safecfg_step(
    hgr: HGR,
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond_denoised: torch.Tensor,
    uncond_denoised: torch.Tensor,
    strength: float = 1.0,
    category_mask: torch.Tensor | None = None,
    passes: int = 1,
) -> tuple[torch.Tensor, StepHarm]:
    """Replace the conditional prediction so that any CFG on top yields eps_u + w * R_s(g).

    eps_c' = eps_u + R_s(g) with R_s(g) = g + s (R(g) - g) (METHOD.md section 2), written in
    denoised space as D_c' = D_c - sigma * s (R(g) - g): a zero change returns D_c bit for bit.
    passes: HGR applications per step (`redirection_parts`). Shapes (B, C, H, W), sigma (B,).
    Returns (D_c' in D_c's dtype, the step's StepHarm).
    """
    g = eps_from_denoised(x, cond_denoised, sigma) - eps_from_denoised(x, uncond_denoised, sigma)
    # At strength 0 the change is not used: one pass gives the harm measurements.
    change, harm = redirection_parts(hgr, g, sigma, x, uncond_denoised, category_mask, passes if strength else 1)
    if strength == 0:
        return cond_denoised, harm
    new_cond = cond_denoised.float() - _per_sample(sigma, x) * (strength * change)
    return new_cond.to(cond_denoised.dtype), harm


def safecfg_denoised(
    hgr: HGR,
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond_denoised: torch.Tensor,
    uncond_denoised: torch.Tensor,
    strength: float = 1.0,
    category_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`safecfg_step` returning only the harm score (B,) float32 beside D_c'."""
    new_cond, harm = safecfg_step(hgr, x, sigma, cond_denoised, uncond_denoised, strength, category_mask)
    return new_cond, harm.score
