"""train_hgr's cost model (`training.cost`) against what sampling and the store really do on the toy world."""

import math

import pytest

from training import cost
from training.jobs import Job, Shard


@pytest.fixture(scope="module")
def backend():
    from training.backends import ToyBackend

    return ToyBackend("cpu")


def _jobs(n=3, kind="safe"):
    from toyworld import prompts

    specs = prompts.harmful_train(n) if kind == "safe" else prompts.clean_train(n)
    return [Job(p.text, p.categories, p.safe_text if kind == "safe" else None, kind, False, 50 + i, 6.0, "", "train")
            for i, p in enumerate(specs)]


# Every sampler of the default mix and the second-order ones the table names.
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde", "uni_pc", "ddim", "heun", "dpm_2",
            "dpmpp_2s_ancestral", "dpmpp_sde", "heunpp2", "lms"]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_model_calls_per_trajectory_equal_the_rows_sampling_records(backend, sampler):
    from training.trajectories import sample_shard

    jobs = _jobs(2)
    rows = sample_shard(backend, jobs, Shard((0, 1), sampler, "karras", 4))
    assert rows["job"].tolist().count(0) == cost.model_calls(sampler, 4) == cost.recorded_rows(sampler, 4, None)


def test_plan_cost_counts_evaluations_rows_and_the_bytes_the_store_writes(backend, tmp_path):
    from training import store
    from training.trajectories import sample_shard

    jobs = _jobs(3) + _jobs(2, "none")
    shards = [Shard((0, 1, 2), "heun", "normal", 3), Shard((3, 4), "euler", "karras", 4)]
    estimate = cost.plan_cost(jobs, shards, backend.latent_shape, None, batch_size=8)
    # heun 3 steps: 5 calls x 3 jobs x 3 conditionings; euler 4 steps: 4 calls x 2 jobs x 2.
    assert (estimate.model_calls, estimate.evaluations, estimate.rows) == (9, 45 + 16, 15 + 8)
    for i, shard in enumerate(shards):
        store.write_shard(tmp_path, i, sample_shard(backend, jobs, shard))
    written = sum(store.shard_path(tmp_path, i).stat().st_size for i in range(len(shards)))
    assert estimate.disk_bytes <= written <= estimate.disk_bytes + 4096 * len(shards)  # safetensors headers
    assert estimate.preloaded and estimate.ram_bytes >= estimate.rows * 4 * math.prod(backend.latent_shape) * 2


def test_record_steps_bound_the_rows_and_a_large_cache_is_read_lazily():
    jobs = _jobs(2)
    shards = [Shard((0, 1), "heun", "normal", 30)]
    latent = (4, 64, 64)
    every = cost.plan_cost(jobs, shards, latent, None, batch_size=16)
    limited = cost.plan_cost(jobs, shards, latent, 10, batch_size=16, preload_bytes=0)
    assert (every.rows, limited.rows) == (2 * 59, 2 * 10)
    assert limited.disk_bytes * every.rows == every.disk_bytes * limited.rows
    assert not limited.preloaded and limited.ram_bytes < limited.disk_bytes + 16 * 4 * 4 * 64 * 64 * 4 + 1000


def test_the_probe_times_one_step_and_the_description_names_the_totals(backend):
    jobs = _jobs(3)
    shards = [Shard((0, 1, 2), "euler", "normal", 20)]
    per_evaluation = cost.probe_evaluation_seconds(backend, jobs, shards[0])
    assert 0 < per_evaluation < 1.0  # the toy UNet: milliseconds
    estimate = cost.plan_cost(jobs, shards, backend.latent_shape, None, 16)
    from dataclasses import replace

    lines = cost.describe(replace(estimate, seconds_per_evaluation=per_evaluation), "cpu")
    text = "\n".join(lines)
    assert "3 trajectories in 1 shards; 180 UNet evaluations" in text and "60 recorded steps" in text
    assert "per 1,000 trajectories" in text and "sampling on cpu" in text
    assert estimate.sampling_seconds is None and replace(estimate, seconds_per_evaluation=0.5).sampling_seconds == 90
