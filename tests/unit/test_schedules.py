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


def test_ema_decay_warms_up_from_a_tenth_to_the_set_decay():
    from hgr_core import ema_decay_at

    assert ema_decay_at(0, 0.995) == pytest.approx(0.1)
    assert ema_decay_at(90, 0.995) == pytest.approx(0.91)
    assert ema_decay_at(1789, 0.995) < 0.995 and ema_decay_at(1790, 0.995) == pytest.approx(0.995)
    assert ema_decay_at(100_000, 0.995) == 0.995
    decays = [ema_decay_at(s, 0.999) for s in range(0, 20_000, 13)]
    assert decays == sorted(decays)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        ema_decay_at(-1, 0.995)


def _ema_after(targets: list[float], decay_of) -> float:
    """The EMA of a one-parameter module (initialised at 0) whose live value is targets[t] at step t."""
    ema, live = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        ema.weight.zero_()
    for step, value in enumerate(targets):
        with torch.no_grad():
            live.weight.fill_(value)
        ema_update(ema, live, decay_of(step))
    return float(ema.weight.detach())


def test_ema_with_warm_up_follows_a_short_run_and_ends_a_long_run_as_before():
    from hgr_core import ema_decay_at

    # A short run: the live weight jumps from the init (0) to 1 and stays there for 20 steps.
    assert _ema_after([1.0] * 20, lambda s: ema_decay_at(s, 0.995)) == pytest.approx(1.0, abs=1e-6)
    assert _ema_after([1.0] * 20, lambda s: 0.995) == pytest.approx(1 - 0.995 ** 20)  # 90% init without warm-up
    # A long run with a moving target: after the warm-up both EMAs forget the start alike.
    path = [math.sin(s / 300) for s in range(5000)]
    warm, plain = _ema_after(path, lambda s: ema_decay_at(s, 0.995)), _ema_after(path, lambda s: 0.995)
    assert warm == pytest.approx(plain, abs=1e-4) and abs(warm - path[-1]) > 0.01  # still an average, not the live value
