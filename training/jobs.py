"""Trajectory jobs: what to sample for HGR training, planned deterministically (no ComfyUI import)."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Job:
    prompt: str
    categories: tuple[str, ...]  # empty for clean prompts
    target_prompt: str | None  # safe counterpart or concept text; None for clean prompts
    target_kind: str  # "none" | "safe" (g* = eps(safe) - eps_u) | "concept" (g* = eps_c - eps(concept))
    steered: bool  # sampled under the target guidance instead of plain CFG
    seed: int
    cfg: float
    negative: str
    split: str  # "train" | "val", by prompt


@dataclass(frozen=True)
class SamplingSettings:
    steps: int = 20
    sampler: str = "euler"
    scheduler: str = "normal"
    cfg_min: float = 5.0
    cfg_max: float = 9.0


def plan_jobs(harmful, clean, concepts, negatives, seeds_per_prompt, val_fraction, settings, seed=0) -> list[Job]:
    """Every (prompt, seed) job of a run, in a fixed order; validation prompts chosen by prompt."""
    rng = random.Random(seed)
    prompts = sorted({p.text for p in harmful} | set(clean))
    val = set(rng.sample(prompts, max(1, round(val_fraction * len(prompts))))) if val_fraction > 0 else set()
    jobs = []
    for p in harmful:
        kind = "safe" if p.safe_text else "concept"
        target = p.safe_text or ", ".join(concepts[c] for c in p.categories)
        for i in range(seeds_per_prompt):
            for steered in (False, True):
                jobs.append(Job(p.text, p.categories, target, kind, steered, rng.randrange(2**31),
                                round(rng.uniform(settings.cfg_min, settings.cfg_max), 3), rng.choice(negatives),
                                "val" if p.text in val else "train"))
    for text in clean:
        for i in range(seeds_per_prompt):
            jobs.append(Job(text, (), None, "none", False, rng.randrange(2**31),
                            round(rng.uniform(settings.cfg_min, settings.cfg_max), 3), rng.choice(negatives),
                            "val" if text in val else "train"))
    return jobs
