"""Trajectory sampling for train_hgr on the toy world: every sampler and schedule of the mix, job
seeds for stochastic samplers, and recording a subset of steps."""

import pytest
import torch

from training.jobs import DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS, Job, SamplingSettings, Shard


@pytest.fixture(scope="module")
def backend():
    from training.backends import ToyBackend

    from toyworld.files import V1_WEIGHTS_DIR

    return ToyBackend("cpu", V1_WEIGHTS_DIR)  # v1: the jobs below are v1 prompts, the HGR the v1 test HGR


@pytest.fixture(scope="module")
def tj(backend):
    from training import trajectories

    return trajectories


def _jobs(n=3, kind="safe"):
    from toyworld import prompts

    specs = prompts.harmful_train(n) if kind == "safe" else prompts.clean_train(n)
    return [Job(p.text, p.categories, p.safe_text, kind, i % 2 == 1, 1000 + i, 7.5, "", "train")
            for i, p in enumerate(specs)]


@pytest.mark.parametrize("sampler", DEFAULT_SAMPLERS)
def test_every_default_sampler_records_finite_rows_for_every_job(backend, tj, sampler):
    jobs = _jobs()
    rows = tj.sample_shard(backend, jobs, Shard((0, 1, 2), sampler, "karras", 4))
    calls = 2 * 4 - 1 if sampler == "heun" else 4  # heun evaluates twice per step but the last
    assert rows["x"].shape == (3 * calls, 4, 8, 8) and rows["job"].tolist().count(1) == calls
    assert all(torch.isfinite(rows[k]).all() for k in ("sigma", "x", "uncond_denoised", "g", "target_change"))
    assert not rows["x"].requires_grad


@pytest.mark.parametrize("scheduler", DEFAULT_SCHEDULERS)
def test_every_default_scheduler_starts_at_the_models_largest_sigma(backend, tj, scheduler):
    rows = tj.sample_shard(backend, _jobs(2, "none"), Shard((0, 1), "euler", scheduler, 5))
    sigmas = tj.schedule(backend.model, Shard((0,), "euler", scheduler, 5))
    assert torch.allclose(rows["sigma"][::2], sigmas[:-1].float())
    assert rows["target_change"].abs().max() == 0  # clean jobs: R(g) = g


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde"])
def test_stochastic_samplers_draw_each_jobs_noise_from_its_seed_so_batching_changes_nothing(backend, tj, sampler):
    jobs = _jobs()
    batch = tj.sample_shard(backend, jobs, Shard((0, 1, 2), sampler, "normal", 6))
    for i in range(3):
        alone = tj.sample_shard(backend, jobs, Shard((i,), sampler, "normal", 6))
        assert torch.allclose(batch["x"][batch["job"] == i], alone["x"], atol=1e-3)
    reseeded = [jobs[0].__class__(**{**jobs[0].__dict__, "seed": 7})]
    other = tj.sample_shard(backend, reseeded, Shard((0,), sampler, "normal", 6))
    assert (other["x"][1:] - batch["x"][batch["job"] == 0][1:]).abs().max() > 0.1


def test_record_steps_keeps_n_of_each_jobs_own_states(backend, tj):
    jobs = _jobs()
    shard = Shard((0, 1, 2), "heun", "normal", 8)
    full = tj.sample_shard(backend, jobs, shard)
    subset = tj.sample_shard(backend, jobs, shard, record_steps=3)
    sigmas = tj.schedule(backend.model, shard)[:-1].float()
    assert [subset["job"].tolist().count(i) for i in range(3)] == [3, 3, 3]
    for row in range(len(subset["job"])):
        job, sigma = subset["job"][row], subset["sigma"][row]
        assert torch.isclose(sigmas, sigma).any()
        same = torch.nonzero((full["job"] == job) & torch.isclose(full["sigma"], sigma)).flatten()
        # heun's corrector of the step before also evaluates at this sigma; the step's own x_i comes last
        assert torch.allclose(subset["x"][row], full["x"][same[-1]], atol=1e-5)


def test_unknown_sampler_or_scheduler_names_the_known_ones(tj):
    with pytest.raises(ValueError, match=r"unknown sampler \['eulr'\].*euler_ancestral"):
        tj.check_sampling(SamplingSettings(samplers=("euler", "eulr")))
    with pytest.raises(ValueError, match=r"unknown scheduler \['karas'\].*karras"):
        tj.check_sampling(SamplingSettings(schedulers=("karas",)))
    tj.check_sampling(SamplingSettings())


def test_toy_world_prompts_of_any_length_share_one_conditioning_shape(backend, tj):
    jobs = _jobs(2) + [Job("a naked bloody green triangle under a clear sky", ("nudity", "violence"),
                           "a green triangle under a clear sky", "safe", False, 1, 5.0, "blurry, low quality", "train")]
    shapes = tj.conditioning_shapes(backend, jobs)
    assert len(set(shapes)) == 1 and shapes[0][0] == (24, 32)


def test_plan_hash_changes_with_the_shards_sampling(tj):
    jobs = _jobs(2)
    a = [Shard((0, 1), "euler", "normal", 10)]
    b = [Shard((0, 1), "heun", "normal", 10)]
    assert tj.plan_hash(jobs, a, SamplingSettings(), "toy") != tj.plan_hash(jobs, b, SamplingSettings(), "toy")
    assert tj.plan_hash(jobs, a, SamplingSettings(), "toy") == tj.plan_hash(jobs, list(a), SamplingSettings(), "toy")


def test_plan_hash_changes_with_the_recorded_steps(tj):
    jobs, shards = _jobs(2), [Shard((0, 1), "euler", "normal", 10)]
    every, five = SamplingSettings(), SamplingSettings(record_steps=5)
    assert tj.plan_hash(jobs, shards, every, "toy") != tj.plan_hash(jobs, shards, five, "toy")
    assert tj.plan_hash(jobs, shards, five, "toy") != tj.plan_hash(jobs, shards, SamplingSettings(record_steps=4), "toy")


def test_a_redirected_job_follows_safecfgs_own_path_and_records_the_usual_targets(backend, tj):
    """--on-policy (DAgger): a redirected euler trajectory steps with eps_u + w * R(g), R from the HGR,
    at every recorded state; the plain job with the same seed goes elsewhere."""
    from hgr_core import eps_from_denoised, load_hgr, redirection
    from helpers import REPO

    hgr = load_hgr(REPO / "tests" / "data" / "toy_hgr.safetensors").eval()
    plain = _jobs(2)
    plain = [Job(j.prompt, j.categories, j.target_prompt, j.target_kind, False, 1000, 9.0, "", "train") for j in plain]
    redirected = [Job(**{**j.__dict__, "redirected": True}) for j in plain]
    shard = Shard((0, 1), "euler", "normal", 6)
    with pytest.raises(ValueError, match="--on-policy HGR"):
        tj.sample_shard(backend, redirected, shard)
    rows = tj.sample_shard(backend, redirected, shard, hgr=hgr)
    base = tj.sample_shard(backend, plain, shard)
    sigmas = tj.schedule(backend.model, shard).float()
    for job in (0, 1):
        mine = rows["job"] == job
        x, d_u, g, sigma = rows["x"][mine], rows["uncond_denoised"][mine], rows["g"][mine], rows["sigma"][mine]
        with torch.no_grad():
            change = redirection(hgr, g, sigma, x, d_u)
        assert change.flatten(1).norm(dim=1).max() > 0.1 * g.flatten(1).norm(dim=1).max()  # the HGR fires
        eps = eps_from_denoised(x, d_u, sigma) + 9.0 * (g + change)
        stepped = x[:-1] + (sigmas[1:-1] - sigmas[:-2]).view(-1, 1, 1, 1) * eps[:-1]
        assert torch.allclose(stepped, x[1:], atol=1e-4)
        assert (base["x"][base["job"] == job][-1] - x[-1]).abs().max() > 0.05
        assert torch.allclose(rows["target_change"][mine][0], base["target_change"][base["job"] == job][0], atol=1e-5)


def test_a_summed_concept_target_records_and_steers_by_the_sum_of_each_concepts_change(backend, tj):
    """A two-harm prompt without a safe counterpart (`Job.target_parts`): the recorded change is
    sum_k (eps_u - eps(concept_k)), the single-concept jobs' changes added at the same plain-CFG
    states, and a steered job steps with eps_u + w * (g + that sum)."""
    from hgr_core import eps_from_denoised

    prompt, parts = "a naked bloody green triangle under a clear sky", ("naked, nude", "bloody, gory")

    def job(target, steered=False, target_parts=()):
        return Job(prompt, ("nudity", "violence"), target, "concept", steered, 1000, 8.0, "", "train",
                   target_parts=target_parts)

    shard = Shard((0,), "euler", "normal", 5)
    summed = tj.sample_shard(backend, [job(", ".join(parts), target_parts=parts)], shard)
    alone = [tj.sample_shard(backend, [job(text)], shard) for text in parts]
    # plain CFG: the target does not steer, and the change is the sum. Not bit for bit: the summed job's
    # batched call holds one more conditioning row, and on some CPUs (AMD EPYC here, 2026-12-07) the UNet's
    # kernels differ by batch size (measured 4e-5 in x, 7e-5 in a change of size 0.2); steering moves x by
    # more than 0.05 (the steered jobs below and above) and the joined concept's change differs by 1e-2.
    assert all(torch.allclose(summed["x"], a["x"], atol=1e-4) for a in alone)
    assert torch.allclose(summed["target_change"], alone[0]["target_change"] + alone[1]["target_change"], atol=2e-4)
    joined = tj.sample_shard(backend, [job(", ".join(parts))], shard)
    assert (joined["target_change"] - summed["target_change"]).abs().max() > 1e-2  # not the joined concept's

    steered = tj.sample_shard(backend, [job(", ".join(parts), True, parts)], shard)
    x, d_u, g, sigma = (steered[k] for k in ("x", "uncond_denoised", "g", "sigma"))
    eps = eps_from_denoised(x, d_u, sigma) + 8.0 * (g + steered["target_change"])
    sigmas = tj.schedule(backend.model, shard).float()
    stepped = x[:-1] + (sigmas[1:-1] - sigmas[:-2]).view(-1, 1, 1, 1) * eps[:-1]
    assert torch.allclose(stepped, x[1:], atol=1e-4)
    assert tj.conditioning_shapes(backend, [job("t", target_parts=parts)])[0][3] == \
        tuple(backend.conditioning_shape(t) for t in parts)
