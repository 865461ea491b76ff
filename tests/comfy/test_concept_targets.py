"""`python -m benchmarks.concept_targets`: the harm the concept targets leave, at a tiny size on toy world v2."""

import pytest
import torch


@pytest.fixture(scope="module")
def world(comfy_nodes):
    from toyworld import load_world

    return load_world()  # toy world v2, the default


def test_the_benchmark_counts_harms_left_per_form_and_prints_its_summary_last(comfy_nodes, tmp_path, capsys):
    from benchmarks import concept_targets

    report = concept_targets.main(["--conditions", "default", "--per-category", "2", "--out", str(tmp_path)])
    assert report["split"] == "dev" and report["prompts"] == {"harmful": 6, "two_harm": 6}
    (row,) = report["conditions"]
    for key in ("single", "two_harm_joined", "two_harm_sum"):
        assert 0 <= row[key]["k"] <= row[key]["n"] and report["pooled"][key]["n"] == row[key]["n"]
        scenes = list(row[key]["by_scene"].values())  # [left, drawn] per scene: the same counts, clustered
        assert [sum(k for k, _ in scenes), sum(n for _, n in scenes)] == [row[key]["k"], row[key]["n"]]
        pooled = report["pooled"][key]
        assert pooled["scenes"] == len(scenes) and pooled["scene_low"] <= pooled["rate"] <= pooled["scene_high"]
    assert row["single"]["n"] >= 5 and row["two_harm_sum"]["n"] == row["two_harm_joined"]["n"] >= 10  # CFG draws them
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("teacher_single=") and "teacher_two_harm_sum=" in last
    assert (tmp_path / "report.txt").read_text().strip().splitlines()[-1] == last
    assert "pooled two_harm_sum: clustered by scene (" in (tmp_path / "report.txt").read_text()


def test_one_category_steers_the_same_either_way_and_two_steer_differently(world):
    from benchmarks import concept_targets, safety_sweep, sweep_design
    from toyworld.facts import facts_of

    facts, condition = facts_of(world), sweep_design.CONDITIONS[0]
    specs = sweep_design.sweep_prompts(sweep_design.default_source(world), sweep_design.SPLITS["dev"],
                                       world.categories, [("nudity", "violence")], 1)

    def steered(name, form):
        model = concept_targets.steered_model(world, specs[name], facts.concepts, form)
        with torch.no_grad():
            return safety_sweep.sample(world, model, specs[name], condition, [7] * len(specs[name]), 8)[0]

    assert torch.equal(steered("harmful", "joined"), steered("harmful", "sum"))
    assert (steered("two_harm", "joined") - steered("two_harm", "sum")).abs().max() > 0.05
    with torch.no_grad():
        plain = safety_sweep.sample(world, world.model, specs["harmful"], condition, [7] * 3, 8)[0]
    assert (plain - steered("harmful", "sum")).abs().max() > 0.05  # the target steers
