"""Warm-up + cosine learning rate and EMA (hgr_core.schedules), shared by the HGR and toy-world training."""

import math

import pytest
import torch

from hgr_core import ema_update, warmup_cosine


@pytest.mark.parametrize("step, expected", [
    (0, 0.01), (49, 0.5), (99, 1.0),  # linear warm-up: (step + 1) / warmup
    (100, 1.0),  # cosine starts at the peak
    (1050, 0.1 + 0.9 * 0.5),  # half-way through the decay
    (2000, 0.1), (5000, 0.1),  # the 10% floor of train_hgr, also past the end
])
def test_warmup_cosine_matches_train_hgr_schedule(step, expected):
    assert warmup_cosine(step, total_steps=2000, warmup=100, min_ratio=0.1) == pytest.approx(expected, abs=1e-12)


def test_warmup_cosine_is_bit_identical_to_the_formulas_it_replaced():
    """train_hgr (10% floor, clamped) and toyworld.train (lr_min_ratio) before the shared function."""
    def hgr_before(step, steps=2000, warmup=100):
        if step < warmup:
            return (step + 1) / warmup
        done = (step - warmup) / max(1, steps - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))

    def toy_before(step, steps=3000, warmup=100, lr_min_ratio=0.05):
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return lr_min_ratio + (1 - lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    assert all(warmup_cosine(s, 2000, 100, 0.1) == hgr_before(s) for s in range(0, 2001, 7))
    assert all(warmup_cosine(s, 3000, 100, 0.05) == toy_before(s) for s in range(0, 3001, 7))


def test_warmup_cosine_without_warmup_starts_at_the_peak():
    assert warmup_cosine(0, total_steps=10, warmup=0, min_ratio=0.0) == 1.0
    assert warmup_cosine(10, total_steps=10, warmup=0, min_ratio=0.0) == pytest.approx(0.0, abs=1e-12)


def test_ema_update_moves_one_minus_decay_of_the_way():
    ema, live = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        for e, p in zip(ema.parameters(), live.parameters()):
            e.fill_(1.0)
            p.fill_(3.0)
    ema_update(ema, live, decay=0.75)
    assert all(torch.allclose(e, torch.full_like(e, 1.5)) for e in ema.parameters())
    assert all(torch.equal(p, torch.full_like(p, 3.0)) for p in live.parameters())
