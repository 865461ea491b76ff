"""README command one end to end, shrunk to seconds: prompt files -> the real train_hgr CLI ->
the safety benchmark -> picture grid, table and the summary line as the last line."""

import importlib.util
import re
import subprocess
import sys

from PIL import Image

from helpers import REPO

SUMMARY = re.compile(r"^harmful_rate_cfg=\S+ harmful_rate_safecfg=\S+ unseen_rate_safecfg=\S+ "
                     r"clean_fidelity=\S+ clean_pixel_diff=\S+ auroc=\S+ concept_regime_harmful=\S+ "
                     r"hard_negative_fidelity=\S+ harmful_upper95=\S+ matched_pair_auroc=\S+$")


def test_demo_trains_with_the_cli_and_prints_the_table_and_summary(tmp_path):
    out = tmp_path / "demo"
    command = [sys.executable, str(REPO / "scripts" / "demo.py"), "--out", str(out), "--harmful-prompts", "10",
               "--clean-prompts", "10", "--per-category", "1", "--benchmark-steps", "2", "--skip-baselines", "--sweep-per-category", "1",
               "--train-args", "--steps 2 --sample-steps 2 --eval-every 2 --preview-count 2"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]

    lines = result.stdout.strip().splitlines()
    assert SUMMARY.match(lines[-1])
    assert "targets" in lines and any(line.startswith("SafeCFG") for line in lines)
    assert "-m training.train_hgr --toy" in result.stderr  # the real CLI, as a user would run it
    assert (out / "prompts" / "harmful_train.csv").read_text().count("\n") == 11  # header + 10 prompts

    from hgr_core import load_hgr

    assert (out / "hgr" / "toy_hgr.safetensors").is_file()  # round 1; the demo's HGR is the on-policy round 2
    hgr = load_hgr(out / "hgr" / "on_policy.safetensors")
    assert hgr.config.channel_mult == (1, 2) and hgr.metadata["base_model"] == "toyworld-v2"
    assert tuple(hgr.config.categories) == ("hate", "nudity", "violence")
    # round 1: 2 seeds x (10 harmful x (plain + steered) + 10 clean); round 2 adds 2 SafeCFG paths per harmful prompt
    assert hgr.metadata["training"]["trajectories"] == 60 + 20
    grid = Image.open(out / "benchmark" / "comparison.png")
    assert grid.size == (260 + 2 * 96, 16 + 18 * 96)  # CFG and SafeCFG columns; 3 prompts (one per category) x 6 sets
    assert (out / "benchmark" / "safety_vs_fidelity.png").is_file()


def _demo_module():
    spec = importlib.util.spec_from_file_location("safecfg_demo", REPO / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_hgr_args(flags):
    from training.cli import build_parser

    return build_parser().parse_args(["--toy", "--harmful", "h.csv", "--clean", "c.txt", "--output", "o.safetensors", *flags])


def test_thorough_demo_trains_on_the_full_mix_with_4_seeds_and_user_flags_win():
    from training import recipes

    demo = _demo_module()

    plan = demo.resolve(demo.build_parser().parse_args(["--thorough"]))
    assert plan.out.as_posix() == "runs/demo-thorough" and plan.per_category == 32 and plan.world == "v2"
    train_args = _train_hgr_args(plan.train_flags)
    assert train_args.seeds_per_prompt == 4 and train_args.sample_steps is None and train_args.steps_range == (10, 50)
    assert train_args.toy_weights == recipes.V2_WEIGHTS_DIR and train_args.seed == 0
    assert recipes.two_harm_share(plan.thorough) == recipes.THOROUGH_TWO_HARM_SHARE > recipes.DEMO_TWO_HARM_SHARE
    assert plan.rounds == 3  # two on-policy rounds, each on the previous round's own SafeCFG paths (chosen on v2's dev)
    assert _train_hgr_args(recipes.TOY_TRAINING).seeds_per_prompt == 2 and _train_hgr_args(recipes.TOY_TRAINING).sample_steps == 10

    plan = demo.resolve(demo.build_parser().parse_args(
        ["--thorough", "--out", "x", "--per-category", "4", "--train-args", "--seeds-per-prompt 1 --sample-steps 3"]))
    user = _train_hgr_args(plan.train_flags)
    assert plan.out.as_posix() == "x" and plan.per_category == 4 and user.seeds_per_prompt == 1 and user.sample_steps == 3
    default = demo.resolve(demo.build_parser().parse_args([]))
    assert default == demo.Plan(demo.Path("runs/demo"), "v2", [*recipes.TOY_TRAINING, "--toy-weights",
                                str(recipes.V2_WEIGHTS_DIR), "--seed", "0"], None, False, 2)
    v1 = demo.resolve(demo.build_parser().parse_args(["--world", "v1", "--seed", "3"]))
    assert v1 == demo.Plan(demo.Path("runs/demo-v1"), "v1", [*recipes.TOY_TRAINING, "--toy-weights",
                           str(recipes.V1_WEIGHTS_DIR), "--seed", "3"], None, False, 1)
    v1_args = _train_hgr_args(v1.train_flags)
    assert v1_args.toy_weights == recipes.V1_WEIGHTS_DIR and v1_args.seed == 3
