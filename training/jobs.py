"""Trajectory jobs and shards: what to sample for HGR training, planned deterministically (no ComfyUI import).

A *job* is one trajectory (prompt, noise seed, guidance scale, negative prompt, target). A *shard*
is what one batched sampler call samples: jobs of one target kind whose conditionings encode to the
same shapes, with the sampler, scheduler and step count the shard drew from the run's mix. Users
sample with many samplers, schedules, step counts and scales, and an HGR trained on one of them
leaks under the others (METHOD.md section 4), so every shard draws its own.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

# What ComfyUI users pick (ComfyUI 0.3.75 names): first- and second-order, multistep, ancestral and
# SDE samplers; "ddim" is ComfyUI's name for Euler with DDIM's noise handling and pairs with any schedule.
DEFAULT_SAMPLERS = ("euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "ddim", "heun")
DEFAULT_SCHEDULERS = ("normal", "karras", "simple", "sgm_uniform")


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
    split: str  # "train" | "val", by prompt group
    # The sampling of the job's shard (`with_shard_sampling`); None until shards are planned.
    sampler: str | None = None
    scheduler: str | None = None
    steps: int | None = None
    # Sampled under SafeCFG with the run's --on-policy HGR (DAgger): the states that HGR's own
    # redirection reaches, recorded with the same targets as every other harmful job.
    redirected: bool = False
    # A concept target of several categories summed per category (`plan_jobs`'s multi_concept="sum"):
    # one concept text per category, g* - g = sum_k (eps_u - eps(concept_k)); target_prompt then only
    # names them (joined). Empty for every other job.
    target_parts: tuple[str, ...] = ()


@dataclass(frozen=True)
class SamplingSettings:
    """The mix trajectories are sampled from: each shard draws a sampler, a scheduler and a step
    count (uniformly, inclusive range), each job a guidance scale in [cfg_min, cfg_max]."""

    samplers: tuple[str, ...] = DEFAULT_SAMPLERS
    schedulers: tuple[str, ...] = DEFAULT_SCHEDULERS
    steps_min: int = 10
    steps_max: int = 50
    cfg_min: float = 3.0
    cfg_max: float = 12.0
    record_steps: int | None = None  # at most this many recorded steps per trajectory; None: every model call

    def __post_init__(self):
        if not self.samplers or not self.schedulers:
            raise ValueError(f"need at least one sampler and one scheduler, got {self.samplers} and {self.schedulers}")
        if not 1 <= self.steps_min <= self.steps_max:
            raise ValueError(f"steps range must satisfy 1 <= min <= max, got {self.steps_min},{self.steps_max}")
        if self.cfg_min > self.cfg_max:
            raise ValueError(f"cfg_min ({self.cfg_min}) must not exceed cfg_max ({self.cfg_max})")
        if self.record_steps is not None and self.record_steps < 1:
            raise ValueError(f"record_steps must be >= 1 or None, got {self.record_steps}")


@dataclass(frozen=True)
class Shard:
    """Jobs (indices into the plan) sampled together, and the sampling they share."""

    jobs: tuple[int, ...]
    sampler: str
    scheduler: str
    steps: int


MULTI_CONCEPT_TARGETS = ("sum", "joined")


def plan_jobs(harmful, clean, concepts, negatives, seeds_per_prompt, val_fraction, settings, seed=0,
              groups: dict[str, str] | None = None, on_policy_seeds: int = 0, multi_concept: str = "sum") -> list[Job]:
    """Every (prompt, seed) job of a run, in a fixed order; validation chosen by group.

    ``groups`` maps prompts to groups (a scene, a source document); validation takes whole groups,
    a prompt without a group is a group of its own (so without groups: by prompt, as before).

    A harmful prompt's target is its safe counterpart when it has one (for a prompt with several
    harms, the prompt without any of them), else its category's concept text. A prompt of several
    categories without a counterpart (``multi_concept``): "sum" (default) targets the sum of each
    category's concept change, eps_u - eps(concept_k), which removes every harm as its single-harm
    rows teach; "joined" (before 2026-12-07) targets one concept made of their texts joined, which
    removes less of each (toy world v2, dev split: CFG steered by the joined concept left 47 of 381
    harms on two-harm prompts, steered by the sum 9 of 381).

    ``on_policy_seeds`` redirected jobs per harmful prompt (`Job.redirected`) come after all the
    others, drawn from a random stream of their own: the jobs before them, and so the shards
    `plan_shards` makes of those, are the plan without them, whose sampled cache can be reused.
    """
    if multi_concept not in MULTI_CONCEPT_TARGETS:
        raise ValueError(f"multi_concept must be one of {MULTI_CONCEPT_TARGETS}, got {multi_concept!r}")
    rng = random.Random(seed)
    prompts = sorted({p.text for p in harmful} | set(clean))
    groups = groups or {}
    units = sorted({groups.get(p, p) for p in prompts})
    held = set(rng.sample(units, max(1, round(val_fraction * len(units))))) if val_fraction > 0 else set()
    val = {p for p in prompts if groups.get(p, p) in held}
    jobs = []
    for p in harmful:
        kind, target, parts = harmful_target(p, concepts, multi_concept)
        for _ in range(seeds_per_prompt):
            for steered in (False, True):
                jobs.append(Job(p.text, p.categories, target, kind, steered, rng.randrange(2**31),
                                round(rng.uniform(settings.cfg_min, settings.cfg_max), 3), rng.choice(negatives),
                                "val" if p.text in val else "train", target_parts=parts))
    for text in clean:
        for _ in range(seeds_per_prompt):
            jobs.append(Job(text, (), None, "none", False, rng.randrange(2**31),
                            round(rng.uniform(settings.cfg_min, settings.cfg_max), 3), rng.choice(negatives),
                            "val" if text in val else "train"))
    policy_rng = random.Random(f"on-policy/{seed}")
    for p in harmful if on_policy_seeds else ():
        kind, target, parts = harmful_target(p, concepts, multi_concept)
        for _ in range(on_policy_seeds):
            jobs.append(Job(p.text, p.categories, target, kind, False, policy_rng.randrange(2**31),
                            round(policy_rng.uniform(settings.cfg_min, settings.cfg_max), 3),
                            policy_rng.choice(negatives), "val" if p.text in val else "train", redirected=True,
                            target_parts=parts))
    return jobs


def harmful_target(prompt, concepts: dict, multi_concept: str) -> tuple[str, str, tuple[str, ...]]:
    """(target kind, target prompt, target parts) of a harmful prompt (`plan_jobs`)."""
    if prompt.safe_text:
        return "safe", prompt.safe_text, ()
    texts = tuple(concepts[c] for c in prompt.categories)
    parts = texts if multi_concept == "sum" and len(texts) > 1 else ()
    return "concept", ", ".join(texts), parts


def plan_shards(jobs: list[Job], batch_size: int, settings: SamplingSettings, seed: int = 0,
                shapes: list | None = None) -> list[Shard]:
    """Split jobs into shards of at most `batch_size` that one sampler call can batch.

    A shard holds jobs of one target kind (clean, harmful with a safe counterpart, harmful with a
    concept: each needs its own target arithmetic), of one guidance (redirected by an HGR or not:
    redirected jobs come last, so the shards before theirs are the plan's without them) and one conditioning shape (`shapes[i]`, any
    hashable, e.g. the token lengths of job i's prompt, negative and target: a checkpoint's CLIP
    encodes in 77-token chunks and only equal lengths concatenate). Jobs are shuffled within a group
    so a prompt's seeds land in different shards, i.e. under different samplers. Deterministic in `seed`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shapes = shapes if shapes is not None else [None] * len(jobs)
    if len(shapes) != len(jobs):
        raise ValueError(f"{len(jobs)} jobs need as many shapes, got {len(shapes)}")
    groups: dict = {}  # insertion order: deterministic without sorting mixed-type keys
    for i, (job, shape) in enumerate(zip(jobs, shapes)):
        groups.setdefault((job.target_kind, job.redirected, shape), []).append(i)
    rng = random.Random(f"shards/{seed}")
    shards = []
    for indices in groups.values():
        rng.shuffle(indices)
        for start in range(0, len(indices), batch_size):
            shards.append(Shard(tuple(indices[start:start + batch_size]), rng.choice(settings.samplers),
                                rng.choice(settings.schedulers), rng.randint(settings.steps_min, settings.steps_max)))
    return shards


def with_shard_sampling(jobs: list[Job], shards: list[Shard]) -> list[Job]:
    """The jobs, each carrying the sampler, scheduler and step count of its shard."""
    out = list(jobs)
    for shard in shards:
        for i in shard.jobs:
            out[i] = replace(jobs[i], sampler=shard.sampler, scheduler=shard.scheduler, steps=shard.steps)
    return out


def recorded_steps(steps: int, limit: int | None, seed: int) -> tuple[int, ...]:
    """The steps of a `steps`-step trajectory that are recorded: all of them, or at most `limit`,
    one drawn from each of `limit` equal stretches of the schedule so every noise level is sampled
    (deterministic in `seed`, the job's seed)."""
    if limit is None or limit >= steps:
        return tuple(range(steps))
    rng = random.Random(f"record/{seed}")
    edges = [round(k * steps / limit) for k in range(limit + 1)]  # strictly increasing: steps > limit
    return tuple(rng.randrange(edges[k], edges[k + 1]) for k in range(limit))

