"""Optimiser schedules shared by every training loop in the project (HGR and toy world)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, total_steps: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate factor at `step`: linear warm-up over `warmup` steps, then cosine decay to `min_ratio`.

    Step 0 already trains at 1/warmup of the peak; from `total_steps` on the factor stays at
    `min_ratio` (SGDR's cosine, Loshchilov and Hutter 2017, https://arxiv.org/abs/1608.03983).
    """
    if step < warmup:
        return (step + 1) / warmup
    done_fraction = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * done_fraction))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay for optimisation step `step` (0-based): min(decay, (1 + step) / (10 + step)).

    The warm-up gives the average a short memory while the weights move fast, so a short run does
    not export mostly its initialisation (at 0.995 with no warm-up, 22% of the EMA is still the
    init after 300 steps; with it, 1e-17). From step (10 * decay - 1) / (1 - decay) on (1,790 at
    0.995) the decay is `decay` itself, so long runs end as before. Diffusers' `EMAModel.get_decay`
    (https://github.com/huggingface/diffusers/blob/main/src/diffusers/training_utils.py) and the
    toy world's training use the same formula.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema_module: torch.nn.Module, live_module: torch.nn.Module, decay: float) -> None:
    """In place: every EMA parameter moves `1 - decay` of the way to the live one (buffers are not averaged)."""
    for e, p in zip(ema_module.parameters(), live_module.parameters()):
        e.lerp_(p, 1 - decay)
