"""What a `train_hgr` run will cost, logged before it samples: model evaluations, the trajectory
cache's disk and RAM, and the sampling time.

Counts come from the plan alone (jobs, shards, the latent shape and the store's format), so they
are exact before anything runs. Time cannot be: `probe_evaluation_seconds` samples one step of
the first shard (its whole batch, so the probe runs at the batch size the run uses) with the code
the run uses, after one warm-up step, and the estimate scales that call by the evaluations
planned. That is exact for shards like the first and linear in between: a harmful shard (3
conditionings) counts 1.5 clean ones (2), which holds where the device is busy with the batch and
overstates where a call's cost barely depends on its batch (measured on this CPU at 16x16 latents:
SD1.5's weights, not its activations, set the time). `run.generate` logs the measured rate after
the first real shard; `benchmarks.training_throughput --checkpoint` compares the estimate with whole shards.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .jobs import Job, Shard
from .store import HALF_FIELDS, PRELOAD_BYTES, bytes_per_row

# ComfyUI samplers that evaluate the model twice per step (their last step, to sigma 0, once);
# heunpp2 three times (its second-last step twice, its last once). Every other sampler in ComfyUI 0.3.75 (euler, the ancestral and multistep
# DPM-Solvers, the SDE multistep ones, uni_pc, ddim, lms, ...) evaluates once per step.
TWO_EVALUATIONS = frozenset({"heun", "dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_sde_gpu"})
THREE_EVALUATIONS = frozenset({"heunpp2"})


def model_calls(sampler: str, steps: int) -> int:
    """Model calls of one trajectory (a shard makes the same calls, batched)."""
    if sampler in THREE_EVALUATIONS:
        return max(1, 3 * steps - 3)
    return 2 * steps - 1 if sampler in TWO_EVALUATIONS else steps


def conditionings(job: Job) -> int:
    """Conditionings evaluated per model call: prompt and negative, plus the target (or one per
    category of a summed concept target, `Job.target_parts`) for harmful jobs."""
    if job.target_prompt is None:
        return 2
    return 2 + max(1, len(job.target_parts))


def shard_evaluations(jobs: list[Job], shard: Shard) -> int:
    """Per-image UNet evaluations of one shard: its model calls x its jobs x their conditionings."""
    return model_calls(shard.sampler, shard.steps) * sum(conditionings(jobs[i]) for i in shard.jobs)


def recorded_rows(sampler: str, steps: int, record_steps: int | None) -> int:
    """Recorded steps of one trajectory: every model call, or at most `record_steps` of the steps."""
    return model_calls(sampler, steps) if record_steps is None else min(record_steps, steps)


@dataclass(frozen=True)
class RunCost:
    trajectories: int
    shards: int
    model_calls: int  # batched sampler calls, summed over shards
    evaluations: int  # per-image UNet evaluations: calls x jobs x conditionings
    rows: int  # recorded steps
    disk_bytes: int
    ram_bytes: int  # what training holds of the cache (the model and optimiser aside)
    preloaded: bool
    seconds_per_evaluation: float | None = None

    @property
    def sampling_seconds(self) -> float | None:
        return None if self.seconds_per_evaluation is None else self.evaluations * self.seconds_per_evaluation

    def per_thousand(self, value: float) -> float:
        return 1000 * value / max(self.trajectories, 1)


def plan_cost(jobs: list[Job], shards: list[Shard], latent_shape, record_steps: int | None, batch_size: int,
              categories: int = 1, preload_bytes: int = PRELOAD_BYTES) -> RunCost:
    """The cost of sampling `shards` and training on their rows (`batch_size` rows per step)."""
    calls = sum(model_calls(s.sampler, s.steps) for s in shards)
    evaluations = sum(shard_evaluations(jobs, s) for s in shards)
    rows = sum(len(s.jobs) * recorded_rows(s.sampler, s.steps, record_steps) for s in shards)
    row_bytes = bytes_per_row(latent_shape)
    pixel_bytes = rows * len(HALF_FIELDS) * math.prod(latent_shape) * 2
    per_row_in_ram = (row_bytes - len(HALF_FIELDS) * math.prod(latent_shape) * 2) + 4 * categories  # sigma, job, labels
    preloaded = pixel_bytes <= preload_bytes
    batch_bytes = batch_size * len(HALF_FIELDS) * math.prod(latent_shape) * 4  # one batch, float32
    ram = rows * per_row_in_ram + (pixel_bytes if preloaded else 0) + batch_bytes
    return RunCost(sum(len(s.jobs) for s in shards), len(shards), calls, evaluations, rows, rows * row_bytes, ram,
                   preloaded)


def probe_evaluation_seconds(backend, jobs: list[Job], shard: Shard, hgr=None) -> float:
    """Seconds per UNet evaluation at the shard's batch: one euler step of its jobs, timed after one
    warm-up (hgr: the --on-policy HGR a shard of redirected jobs runs, and whose cost it then includes)."""
    from .trajectories import sample_shard

    probe = Shard(shard.jobs, "euler", shard.scheduler, 1)
    sample_shard(backend, jobs, probe, hgr=hgr)  # warm-up: first-call allocations, kernels, text encodings
    start = time.perf_counter()
    sample_shard(backend, jobs, probe, hgr=hgr)
    seconds = time.perf_counter() - start
    return seconds / sum(conditionings(jobs[i]) for i in probe.jobs)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def describe(cost: RunCost, device: str) -> list[str]:
    """Log lines of a run's cost model."""
    per = max(cost.trajectories, 1)
    lines = [
        f"cost model: {cost.trajectories} trajectories in {cost.shards} shards; {cost.evaluations:,} UNet evaluations "
        f"({cost.evaluations / per:.1f} per trajectory, {cost.model_calls:,} batched calls)",
        f"  cache: {cost.rows:,} recorded steps ({cost.rows / per:.1f} per trajectory), disk {_size(cost.disk_bytes)} "
        f"({_size(cost.per_thousand(cost.disk_bytes))} per 1,000 trajectories)",
        f"  RAM for the cache while training: {_size(cost.ram_bytes)} "
        + ("(small enough to be read into memory once)" if cost.preloaded else "(read lazily in batches)"),
    ]
    if cost.sampling_seconds is not None:
        lines.append(f"  sampling on {device}: ~{_duration(cost.sampling_seconds)} "
                     f"(~{_duration(cost.per_thousand(cost.sampling_seconds))} per 1,000 trajectories; "
                     f"probe: one step of the first shard, {1000 * cost.seconds_per_evaluation:.2f} ms per evaluation)")
    return lines
