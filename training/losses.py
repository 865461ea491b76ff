"""The HGR training objective (METHOD.md section 4) with per-category supervision.

All terms are normalised per sample by |g|^2 so every noise level counts. For a row with target
change T = g* - g (0 for clean prompts):
- |R_all - T|^2: all categories together reproduce the target;
- |R_k - T|^2 for a single-category row of category k: that category alone does the job, so a
  user who selects only k still gets the full redirection;
- |R_j|^2 for every category j the row is not labelled with: other categories keep their hands
  off (this is what makes per-category control work; for clean rows it covers every category).

Rows with several harms (e.g. nudity and violence; the target is the prompt without any of them,
or the sum of every present category's concept change, `jobs.plan_jobs`) get the first and the last
kind of term only. Guidance is
about additive in its harms, g = g_clean + a_1 + a_2, and the single-harm rows train category k's
change to cancel its own contribution, h_k delta_k ~ -a_k. Under the "sum" combination rule R_all
is the sum of the per-category changes, so the all-categories term on a two-harm row asks exactly
for -a_1 - a_2 from that sum, and selecting only category k on such a prompt still removes harm k
(and leaves the other). A per-category target for multi-harm rows ("the prompt without harm k
only") would cost one more conditioning per harm at every sampled step, so there is none.
"""

from __future__ import annotations

import torch

from hgr_core import HGR, combine_redirections, redirection

NORM_EPS = 1e-6


def squared_norm(t: torch.Tensor) -> torch.Tensor:
    """|t|^2 per sample: (B, ...) -> (B,)."""
    return t.pow(2).flatten(1).sum(1)


def redirection_losses(hgr: HGR, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-row loss terms for a batch with keys sigma, x, uncond_denoised, g, target_change, labels (B, K)."""
    g, target, labels = batch["g"], batch["target_change"], batch["labels"]
    out = hgr(g, batch["sigma"], batch["x"], batch["uncond_denoised"])
    gate = out.gate
    norm = squared_norm(g) + NORM_EPS
    rule = getattr(hgr, "module", hgr).combine_rule  # train with the rule the file will record (DDP wraps the HGR)
    total = squared_norm(combine_redirections(out.delta, gate, rule=rule) - target) / norm
    single = labels.sum(1) == 1
    per_category = torch.zeros_like(total)
    eye = torch.eye(labels.shape[1], device=g.device)
    for k in range(labels.shape[1]):
        change_k = combine_redirections(out.delta, gate, eye[k])
        own = single & (labels[:, k] > 0)
        per_category = per_category + torch.where(own, squared_norm(change_k - target), torch.zeros_like(total)) / norm
        per_category = per_category + (1 - labels[:, k]) * squared_norm(change_k) / norm
    return {"total": total, "per_category": per_category}


def with_second_pass_rows(hgr: HGR, batch: dict[str, torch.Tensor], share: float) -> dict[str, torch.Tensor]:
    """The batch with its first round(share * B) rows moved to where a second HGR pass starts
    (`SafeCFGApply`'s passes = 2): g' = g + (R(g) - g) from the current network, without gradient, and
    the target change g* - g' = T - (R(g) - g). The other rows are unchanged (the batch's rows are
    random draws, so the first ones are a random subset)."""
    n = round(share * len(batch["g"]))
    if n == 0:
        return batch
    module = getattr(hgr, "module", hgr)  # the network itself under DDP: this pass is not trained
    with torch.no_grad():
        first = redirection(module, batch["g"][:n], batch["sigma"][:n], batch["x"][:n], batch["uncond_denoised"][:n])
    shift = torch.cat([first, torch.zeros_like(batch["g"][n:])])
    return {**batch, "g": batch["g"] + shift, "target_change": batch["target_change"] - shift}


def training_loss(hgr: HGR, batch: dict[str, torch.Tensor], clean_weight: float,
                  second_pass_share: float = 0.0) -> torch.Tensor:
    terms = redirection_losses(hgr, with_second_pass_rows(hgr, batch, second_pass_share))
    harmful = batch["labels"].sum(1) > 0
    weight = torch.where(harmful, torch.ones_like(terms["total"]), torch.full_like(terms["total"], clean_weight))
    return (weight * (terms["total"] + terms["per_category"])).sum() / weight.sum()
