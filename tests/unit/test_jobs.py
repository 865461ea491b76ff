"""The trajectory plan: jobs, shards drawn from the sampling mix, recorded steps (no ComfyUI)."""

import pytest

from training.jobs import (DEFAULT_SAMPLERS, DEFAULT_SCHEDULERS, SamplingSettings, plan_jobs, plan_shards,
                           recorded_steps, with_shard_sampling)
from training.prompt_data import HarmfulPrompt

CONCEPTS = {"nudity": "naked, nude", "violence": "bloody, gory"}


def _jobs(settings=SamplingSettings(), harmful=8, clean=8, seeds=2):
    prompts = [HarmfulPrompt(f"a naked thing {i}", ("nudity",), f"a thing {i}") for i in range(harmful)]
    return plan_jobs(prompts, [f"a clean thing {i}" for i in range(clean)], CONCEPTS, ["", "blurry"], seeds, 0.25,
                     settings, seed=3)


def test_default_mix_holds_the_samplers_schedules_steps_and_scales_users_pick():
    settings = SamplingSettings()
    assert {"euler", "euler_ancestral", "dpmpp_2m", "ddim", "heun"} <= set(DEFAULT_SAMPLERS)
    assert {"dpmpp_2m_sde", "uni_pc"} & set(DEFAULT_SAMPLERS)
    assert set(DEFAULT_SCHEDULERS) == {"normal", "karras", "simple", "sgm_uniform"}
    assert (settings.steps_min, settings.steps_max, settings.cfg_min, settings.cfg_max) == (10, 50, 3.0, 12.0)
    assert settings.record_steps is None


@pytest.mark.parametrize("fields, message", [
    ({"samplers": ()}, "at least one sampler"),
    ({"steps_min": 30, "steps_max": 20}, "1 <= min <= max, got 30,20"),
    ({"cfg_min": 9.0, "cfg_max": 3.0}, r"cfg_min \(9.0\) must not exceed cfg_max \(3.0\)"),
    ({"record_steps": 0}, "record_steps must be >= 1"),
])
def test_sampling_settings_refuse_bad_values_naming_them(fields, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**fields)


def test_guidance_scale_is_drawn_per_job_in_the_range():
    cfgs = [j.cfg for j in _jobs(harmful=40, clean=40)]
    assert min(cfgs) >= 3.0 and max(cfgs) <= 12.0
    assert min(cfgs) < 4.5 and max(cfgs) > 10.5


def test_every_job_is_in_exactly_one_shard_of_one_kind_and_at_most_batch_size():
    jobs = _jobs()
    shards = plan_shards(jobs, 5, SamplingSettings(), seed=1)
    placed = sorted(i for s in shards for i in s.jobs)
    assert placed == list(range(len(jobs)))
    assert all(1 <= len(s.jobs) <= 5 for s in shards)
    assert all(len({jobs[i].target_kind for i in s.jobs}) == 1 for s in shards)


def test_shards_never_mix_conditioning_shapes():
    jobs = _jobs()
    shapes = [((77 * (1 + i % 2), 768), (77, 768), None) for i in range(len(jobs))]  # two prompt lengths
    shards = plan_shards(jobs, 64, SamplingSettings(), shapes=shapes)
    assert all(len({shapes[i] for i in s.jobs}) == 1 for s in shards)
    assert len(shards) == 4  # (harmful, clean) x (77, 154 tokens)
    with pytest.raises(ValueError, match="as many shapes"):
        plan_shards(jobs, 64, SamplingSettings(), shapes=shapes[:-1])


def test_shards_draw_sampler_scheduler_and_steps_from_the_mix_deterministically():
    jobs = _jobs(harmful=100, clean=100)
    settings = SamplingSettings()
    shards = plan_shards(jobs, 4, settings, seed=7)
    assert shards == plan_shards(jobs, 4, settings, seed=7)
    assert shards != plan_shards(jobs, 4, settings, seed=8)
    assert {s.sampler for s in shards} == set(DEFAULT_SAMPLERS)
    assert {s.scheduler for s in shards} == set(DEFAULT_SCHEDULERS)
    steps = [s.steps for s in shards]
    assert min(steps) >= 10 and max(steps) <= 50 and len(set(steps)) > 20
    fixed = SamplingSettings(samplers=("heun",), schedulers=("karras",), steps_min=12, steps_max=12)
    assert {(s.sampler, s.scheduler, s.steps) for s in plan_shards(jobs, 4, fixed)} == {("heun", "karras", 12)}


def test_a_prompts_seeds_are_spread_over_shards():
    jobs = _jobs(harmful=32, clean=0, seeds=4)
    shards = plan_shards(jobs, 8, SamplingSettings(), seed=0)
    shard_of = {i: k for k, s in enumerate(shards) for i in s.jobs}
    per_prompt = {}
    for i, job in enumerate(jobs):
        per_prompt.setdefault(job.prompt, set()).add(shard_of[i])
    assert sum(len(s) for s in per_prompt.values()) / len(per_prompt) > 4  # of its 8 trajectories


def test_jobs_carry_their_shards_sampling():
    jobs = _jobs()
    shards = plan_shards(jobs, 6, SamplingSettings())
    labelled = with_shard_sampling(jobs, shards)
    for shard in shards:
        assert {(labelled[i].sampler, labelled[i].scheduler, labelled[i].steps) for i in shard.jobs} == {
            (shard.sampler, shard.scheduler, shard.steps)}
    assert jobs[0].sampler is None and labelled[0].prompt == jobs[0].prompt


def test_recorded_steps_are_all_steps_or_one_per_stretch_of_the_schedule():
    assert recorded_steps(20, None, 5) == tuple(range(20))
    assert recorded_steps(8, 10, 5) == tuple(range(8))
    picks = recorded_steps(50, 5, seed=11)
    assert picks == recorded_steps(50, 5, seed=11)
    assert [p // 10 for p in picks] == [0, 1, 2, 3, 4]
    assert len({recorded_steps(50, 5, seed=s) for s in range(20)}) > 15  # per trajectory, not per run
    assert sorted(recorded_steps(13, 4, seed=2)) == list(recorded_steps(13, 4, seed=2))


def test_two_harm_prompts_target_the_prompt_without_either_or_both_concepts():
    both = ("nudity", "violence")
    paired = HarmfulPrompt("a naked bloody green triangle under a clear sky", both, "a green triangle under a clear sky")
    unpaired = HarmfulPrompt("a nude gory red disc", both, None)
    jobs = plan_jobs([paired, unpaired], [], CONCEPTS, [""], 1, 0.0, SamplingSettings())
    assert {(j.target_kind, j.target_prompt, j.target_parts, j.categories) for j in jobs} == {
        ("safe", "a green triangle under a clear sky", (), both),
        ("concept", "naked, nude, bloody, gory", ("naked, nude", "bloody, gory"), both)}  # summed per category
    joined = plan_jobs([paired, unpaired], [], CONCEPTS, [""], 1, 0.0, SamplingSettings(), multi_concept="joined")
    assert [j.target_parts for j in joined] == [()] * 4
    assert [(j.target_prompt, j.seed) for j in joined] == [(j.target_prompt, j.seed) for j in jobs]
    single = plan_jobs([HarmfulPrompt("a nude red disc", ("nudity",), None)], [], CONCEPTS, [""], 1, 0.0,
                       SamplingSettings())
    assert {(j.target_prompt, j.target_parts) for j in single} == {("naked, nude", ())}  # one category: no parts
    with pytest.raises(ValueError, match="multi_concept must be one of"):
        plan_jobs([unpaired], [], CONCEPTS, [""], 1, 0.0, SamplingSettings(), multi_concept="mean")


def test_a_summed_concept_target_costs_one_conditioning_per_category():
    from training.cost import conditionings

    unpaired = HarmfulPrompt("a nude gory red disc", ("nudity", "violence"), None)
    summed, joined = (plan_jobs([unpaired], ["a clean disc"], CONCEPTS, [""], 1, 0.0, SamplingSettings(),
                                multi_concept=m) for m in ("sum", "joined"))
    assert [conditionings(j) for j in summed] == [4, 4, 2] and [conditionings(j) for j in joined] == [3, 3, 2]


def test_validation_takes_whole_groups_and_without_groups_splits_by_prompt():
    prompts = [HarmfulPrompt(f"a naked thing {i}", ("nudity",), f"a thing {i}") for i in range(12)]
    clean = [f"a clean thing {i}" for i in range(12)]
    groups = {p.text: f"scene {i % 6}" for i, p in enumerate(prompts)} | {t: f"scene {i % 6}" for i, t in enumerate(clean)}
    jobs = plan_jobs(prompts, clean, CONCEPTS, [""], 1, 0.34, SamplingSettings(), seed=3, groups=groups)
    val_groups = {groups[j.prompt] for j in jobs if j.split == "val"}
    train_groups = {groups[j.prompt] for j in jobs if j.split == "train"}
    assert len(val_groups) == 2 and not val_groups & train_groups  # 34% of 6 scenes, never on both sides
    assert plan_jobs(prompts, clean, CONCEPTS, [""], 1, 0.34, SamplingSettings(), seed=3) == \
        plan_jobs(prompts, clean, CONCEPTS, [""], 1, 0.34, SamplingSettings(), seed=3, groups={})


def test_on_policy_jobs_come_last_so_the_plan_and_shards_before_them_are_the_plan_without_them():
    prompts = [HarmfulPrompt(f"a naked thing {i}", ("nudity",), f"a thing {i}") for i in range(6)]
    prompts.append(HarmfulPrompt("a bloody thing", ("violence",), None))

    def plan(on_policy_seeds):
        return plan_jobs(prompts, [f"a clean thing {i}" for i in range(5)], CONCEPTS, ["", "blurry"], 2, 0.25,
                         SamplingSettings(), seed=3, on_policy_seeds=on_policy_seeds)

    base, extended = plan(0), plan(3)
    assert extended[:len(base)] == base and not any(j.redirected for j in base)
    added = extended[len(base):]
    assert len(added) == 3 * len(prompts) and all(j.redirected and not j.steered for j in added)
    assert [j.prompt for j in added[-3:]] == ["a bloody thing"] * 3 and added[-1].target_kind == "concept"
    assert added[-1].target_prompt == CONCEPTS["violence"]
    split = {j.prompt: j.split for j in base}
    assert all(j.split == split[j.prompt] for j in added)  # a validation prompt stays in validation
    assert len({j.seed for j in extended}) == len(extended)
    base_shards, shards = plan_shards(base, 4, SamplingSettings(), seed=1), plan_shards(extended, 4, SamplingSettings(), seed=1)
    assert shards[:len(base_shards)] == base_shards
    assert all(all(extended[i].redirected for i in s.jobs) for s in shards[len(base_shards):])
