"""training.recipes: the flags each toy recipe gives train_hgr, and the refusals before any training starts."""

from pathlib import Path

import pytest

from training import recipes


def _parse(flags):
    from training.cli import build_parser

    return build_parser().parse_args(["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "o.safetensors", *flags])


def test_recipes_parse_and_extra_flags_win():
    demo = _parse(recipes.toy_recipe(False))
    thorough = _parse(recipes.toy_recipe(True, Path("w"), ["--steps", "7"]))
    assert (demo.steps, demo.seeds_per_prompt, demo.sample_steps) == (1200, 2, 10)
    assert (thorough.steps, thorough.seeds_per_prompt, thorough.toy_weights) == (7, 4, Path("w"))
    assert recipes.two_harm_share(True) == 0.35 and recipes.two_harm_share(False) == 0.2


@pytest.mark.parametrize("world, weights, match", [("v3", None, "world must be"), ("v1", Path("w"), "needs world 'v2'")])
def test_train_toy_hgr_refuses_before_training(tmp_path, world, weights, match):
    with pytest.raises(ValueError, match=match):
        recipes.train_toy_hgr(world, tmp_path / "o.safetensors", tmp_path, toy_weights=weights)
    assert not any(tmp_path.iterdir())


def test_train_in_rounds_needs_a_round(tmp_path):
    with pytest.raises(ValueError, match="at least 1"):
        recipes.train_in_rounds({}, tmp_path, [], 0)


def test_the_concept_only_regime_drops_every_safe_counterpart_and_keeps_the_rest(tmp_path):
    from toyworld.v2 import prompts
    from training.prompt_data import read_groups, read_harmful

    files = prompts.write_prompt_files(tmp_path, 20, 10, 0.25)
    paired = read_harmful(files["harmful_train.csv"])
    recipes.drop_safe_counterparts(files["harmful_train.csv"])
    concept_only = read_harmful(files["harmful_train.csv"])
    assert all(p.safe_text for p in paired) and not any(p.safe_text for p in concept_only)
    assert [(p.text, p.categories) for p in concept_only] == [(p.text, p.categories) for p in paired]
    assert len(set(read_groups(files["harmful_train.csv"]).values())) > 1  # the scene groups stay
    with pytest.raises(ValueError, match="harmful_train.csv has no safe_prompt column"):
        recipes.drop_safe_counterparts(files["harmful_train.csv"])


@pytest.mark.parametrize("thorough, concept_only", [(True, True), (True, False), (False, True)])
def test_no_recipe_takes_clean_emphasis_and_the_flags_still_train_it(tmp_path, monkeypatch, thorough, concept_only):
    from training.prompt_data import read_clean

    seen = {}

    def fake_rounds(files, work, recipe, rounds):  # stands in for the training subprocesses
        seen["recipe"], seen["clean"] = recipe, read_clean(files["clean_train.csv"])
        weights = tmp_path / "w.safetensors"
        weights.write_bytes(b"weights")
        return weights

    monkeypatch.setattr(recipes, "train_in_rounds", fake_rounds)
    out = recipes.train_toy_hgr("v2", tmp_path / "out.safetensors", tmp_path / "work", thorough=thorough,
                                concept_only=concept_only, extra=["--seed", "3"])
    assert out.read_bytes() == b"weights" and len(seen["clean"]) == recipes.DEFAULT_PROMPTS[1] == 200
    args = _parse(seen["recipe"])
    assert (args.clean_weight, args.seed) == (1.0, 3)  # dropped on dev (training/recipes.py): no clean emphasis
    emphasis = recipes.train_toy_hgr("v2", tmp_path / "e.safetensors", tmp_path / "work2", thorough=thorough,
                                     concept_only=concept_only, prompts=(400, 400), extra=["--clean-weight", "2"])
    assert emphasis.is_file() and _parse(seen["recipe"]).clean_weight == 2.0 and len(seen["clean"]) == 400
