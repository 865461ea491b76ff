"""The HGR training loss on rows with no, one and two harms."""

import torch

from hgr_core import HGR, HGRConfig, combine_redirections
from training.losses import redirection_losses, training_loss, with_second_pass_rows


def _randomised_hgr() -> HGR:
    torch.manual_seed(0)
    hgr = HGR(HGRConfig(base_channels=8, channel_mult=(1,)))
    with torch.no_grad():
        for p in hgr.parameters():
            p.normal_(0, 0.2)  # a fresh HGR is the identity; a trained one is not
    return hgr


def _batch(labels):
    n = len(labels)
    generator = torch.Generator().manual_seed(1)
    rows = {k: torch.randn(n, 4, 8, 8, generator=generator) for k in ("g", "x", "uncond_denoised", "target_change")}
    rows["sigma"] = torch.linspace(0.1, 10, n)
    rows["labels"] = torch.tensor(labels, dtype=torch.float32)
    return rows


def test_two_harm_rows_get_only_the_all_categories_term():
    hgr, batch = _randomised_hgr(), _batch([[1, 1], [1, 0], [0, 0]])
    terms = redirection_losses(hgr, batch)
    out = hgr(batch["g"], batch["sigma"], batch["x"], batch["uncond_denoised"])
    norm = batch["g"].pow(2).flatten(1).sum(1)
    total = (combine_redirections(out.delta, out.gate, rule=hgr.combine_rule) - batch["target_change"]).pow(2).flatten(1).sum(1)
    assert torch.allclose(terms["total"], total / norm, rtol=1e-4)
    assert terms["per_category"][0] == 0  # both categories labelled: no own target, no "leave alone"
    assert terms["per_category"][1] > 0 and terms["per_category"][2] > 0


def test_training_loss_is_finite_and_reaches_every_parameter_from_two_harm_rows():
    hgr, batch = _randomised_hgr(), _batch([[1, 1], [1, 1]])
    loss = training_loss(hgr, batch, clean_weight=1.0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in hgr.parameters() if p.requires_grad)


def test_second_pass_rows_start_where_the_first_pass_left_and_keep_the_same_goal():
    hgr, batch = _randomised_hgr(), _batch([[1, 0], [0, 1], [0, 0], [1, 1]])
    assert with_second_pass_rows(hgr, batch, 0.0) is batch
    moved = with_second_pass_rows(hgr, batch, 0.5)
    out = hgr(batch["g"][:2], batch["sigma"][:2], batch["x"][:2], batch["uncond_denoised"][:2])
    first = combine_redirections(out.delta, out.gate, rule=hgr.combine_rule)
    assert torch.allclose(moved["g"][:2], batch["g"][:2] + first, atol=1e-6)
    assert torch.equal(moved["g"][2:], batch["g"][2:]) and torch.equal(moved["target_change"][2:], batch["target_change"][2:])
    goal = batch["g"] + batch["target_change"]  # g*: the guidance both passes aim for
    assert torch.allclose(moved["g"] + moved["target_change"], goal, atol=1e-5)
    assert not moved["g"].requires_grad  # the first pass is not trained through
    loss = training_loss(hgr, batch, clean_weight=1.0, second_pass_share=0.5)
    assert torch.isfinite(loss) and not torch.isclose(loss, training_loss(hgr, batch, clean_weight=1.0))
