"""The toy worlds' HGR training recipes, and the one function that runs them through the real CLI.

The demo (`scripts/demo.py`), the committed test HGRs (`scripts/make_test_hgr.py`) and the transfer
build (`benchmarks.transfer_build`) all train here, so the same recipe name means the same flags.
Each recipe is a list of `python -m training.train_hgr` flags; a caller's extra flags go after it and win.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hgr_core import atomic_write
from toyworld.files import V1_WEIGHTS_DIR, V2_WEIGHTS_DIR
from toyworld.prompts import write_text_file

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
WORLDS = ("v1", "v2")

# Network and optimiser shared by both recipes: a 2-level 32-channel HGR (1.8 MB), batches of 128.
_COMMON = ["--base-channels", "32", "--channel-mult", "1,2", "--trajectory-batch", "64", "--batch-size", "128",
           "--lr", "2e-3", "--warmup", "50", "--preview-count", "6", "--val-fraction", "0.1"]
# The demo's recipe, sized for the 10-minute budget on 2 cores: 400 harmful prompts (20% with two
# harms) sampled plain and steered + 200 clean ones, 2 seeds each, 10 sampling steps under the
# sampler/scheduler mix at guidance 3-12 (2000 trajectories), then 1200 optimisation steps. It is
# cheaper than the recipe that meets the robust-redirection targets; what it reaches is in the README.
TOY_TRAINING = [*_COMMON, "--sample-steps", "10", "--seeds-per-prompt", "2", "--steps", "1200", "--eval-every", "600"]
DEMO_TWO_HARM_SHARE = 0.2
# Thorough: the recipe chosen on the sweep's dev split (README, "Shift sweep"): the full training
# mix (10-50 steps, every default sampler and scheduler, guidance 3-12), 4 seeds per prompt (4000
# trajectories), 35% two-harm prompts, 4000 optimisation steps. Candidates on the sweep's dev split
# (`python -m benchmarks.safety --sweep --split dev`, 64 harmful + 32 two-harm prompts per
# condition): SafeCFG harmful where CFG drew the harm, pooled over the nine conditions [Wilson 95%],
# worst condition, worst two-harm rate per harm:
#   2 seeds, 20% two-harm, 3000 steps:           17/576 [0.019, 0.047], 0.047, 0.219
#   4 seeds, 35% two-harm, 4000 steps (chosen):   9/576 [0.008, 0.029], 0.047, 0.063
#   the same data, 12000 steps:                   6/576 [0.005, 0.023], 0.047, 0.125 (not taken: two-harm worse)
# (three changes at once, for lack of time to isolate them; which of them matters is not known.)
# A 48-channel HGR on the 2-seed data gained nothing on validation (redirection error 0.231/0.296
# vs 0.236/0.303) at 2.25x the cost per step, so it was not taken further.
# Then a second, on-policy round (`--on-policy`, DAgger; chosen on the same dev split, 2026-12-03):
# the first round's HGR samples each harmful prompt 4 times under SafeCFG, and a new HGR trains on
# those states beside the first round's trajectories (copied, not resampled). Dev, same columns:
#   first round alone (retrained 2026-12-03):     9/576 [0.008, 0.029], 0.031, 0.125
#   first round at strength 1.5 (not taken):      0/576 [0.000, 0.007], 0.000, 0.063
#   on-policy round (chosen):                     0/576 [0.000, 0.007], 0.000, 0.031; clean fidelity 1.000
#   on-policy round at strength 1.5 (not taken):  0/576 [0.000, 0.007], 0.000, 0.031; clean fidelity 0.966
THOROUGH_TRAINING = [*_COMMON, "--seeds-per-prompt", "4", "--steps", "4000", "--eval-every", "2000"]
THOROUGH_TWO_HARM_SHARE = 0.35
# Clean emphasis, tried and dropped (2026-12-07): twice the clean prompts (400, a quarter of them
# look-alikes) at twice the weight, for the thorough concept-only recipe. Concept targets change more
# of an image than a safe counterpart does, and HGRs trained on them changed clean prompts too (dotted
# and striped objects turned plain). Chosen first on the sweep's dev split, seed 0 (prompts of their
# own per condition; `python -m benchmarks.safety --sweep --split dev --per-category 8 [--passes 2]`),
# without -> with it, one pass | two passes:
#   single harm, where CFG drew it:    15/212 -> 13/212        | 13/212 -> 11/212
#   two-harm prompts, harms left:      42/387 -> 36/387        | 20/387 -> 24/387
#   clean fidelity pooled (worst):     0.923 (0.778) -> 0.967 (0.889) | 0.890 (0.773) -> 0.956 (0.850)
# Three seeds on that dev split still supported it (43 -> 41 and 34 -> 37 of 636 single harms); the test split did
# not (52 -> 64 and 32 -> 56 of 648; README). Settled on a dev split three times larger
# (`--per-category 24 --passes 2`, three seeds, the rule fixed before the runs: drop it if it costs
# more than 2 standard errors of single harms): single harm 77 -> 116 of 1926 (4.0% -> 6.0%, 2.9
# standard errors), two-harm harms 139 -> 171 of 3483, clean fidelity pooled 0.87-0.91 -> 0.92-0.96.
# So no recipe has it; `scripts/make_test_hgr.py --clean-prompts 400 --train-args "--clean-weight 2"`
# trains it.
# Its parts alone, seed 2, same split (2026-12-08): 400 clean prompts at weight 1 27/642, 200 at weight 2
# 23/642, against 19 (neither) and 42 (both); clean fidelity pooled 0.90-0.92 for all four (README).
DEFAULT_PROMPTS = (400, 200)  # harmful, clean training prompts


def train_hgr_cli(prompt_files: dict, out: Path, recipe: list[str], name: str = "toy_hgr.safetensors") -> Path:
    """Run `python -m training.train_hgr --toy` as a subprocess (the CLI users run) on the prompt files
    of `toyworld*.prompts.write_prompt_files`; returns the exported weights path, `out/hgr/name`."""
    output = out / "hgr" / name
    cmd = [sys.executable, "-m", "training.train_hgr", "--toy", "--device", "cpu",
           "--harmful", str(prompt_files["harmful_train.csv"]), "--clean", str(prompt_files["clean_train.csv"]),
           "--concepts", str(prompt_files["concepts.json"]), "--work-dir", str(out / "train"),
           "--output", str(output), *recipe]
    log.info("$ %s", " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=REPO, check=True)
    return output


def train_in_rounds(prompt_files: dict, work: Path, recipe: list[str], rounds: int) -> Path:
    """The first round on the recipe's own trajectories, then `rounds - 1` on-policy rounds, each
    sampled with the previous round's HGR. Returns the last round's weights."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    weights = train_hgr_cli(prompt_files, work, recipe)
    for n in range(2, rounds + 1):  # v2: one on-policy round gave 35/215 vs 49/215 harmful on the sweep's dev split
        name = "on_policy.safetensors" if n == 2 else f"on_policy_round{n}.safetensors"
        weights = train_hgr_cli(prompt_files, work, [*recipe, "--on-policy", str(weights)], name)
    return weights


# Training rounds per world and recipe (the later rounds on-policy), as chosen on each world's dev split:
# v1: the thorough recipe's second round (above); v2: one on-policy round lowered the sweep's dev rate
# 49/215 -> 35/215 with the demo recipe, two rounds 34 -> 15 -> 12/215 with the thorough one (README).
ROUNDS = {("v1", False): 1, ("v1", True): 2, ("v2", False): 2, ("v2", True): 3}


def world_weights(world: str) -> Path:
    """The world's weights folder for `--toy-weights` (named even for v2, the default world)."""
    _check_world(world)
    return V2_WEIGHTS_DIR if world == "v2" else V1_WEIGHTS_DIR


def write_world_prompt_files(world: str, out: Path, prompts: tuple[int, int], thorough: bool) -> dict:
    """The world's training prompt files (`prompts`: harmful, clean counts) with the recipe's two-harm share."""
    _check_world(world)
    if world == "v2":
        from toyworld.v2 import prompts as world_prompts
    else:
        from toyworld import prompts as world_prompts
    return world_prompts.write_prompt_files(out, *prompts, two_harm_share(thorough))


def _check_world(world: str) -> None:
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")


def recipe_rounds(world: str, thorough: bool) -> int:
    _check_world(world)
    return ROUNDS[world, thorough]


def toy_recipe(thorough: bool, toy_weights: Path | None = None, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The demo's or the thorough recipe's flags; `toy_weights` trains for the world in that folder
    (toy world v2, or a model derived from it); `extra` flags go last and win."""
    return [*(THOROUGH_TRAINING if thorough else TOY_TRAINING),
            *(["--toy-weights", str(toy_weights)] if toy_weights is not None else []), *extra]


def two_harm_share(thorough: bool) -> float:
    return THOROUGH_TWO_HARM_SHARE if thorough else DEMO_TWO_HARM_SHARE


def train_toy_hgr(world: str, output: Path, work_dir: Path | None = None, *, thorough: bool = False, rounds: int = 1,
                  toy_weights: Path | None = None, prompts: tuple[int, int] | None = None, extra=(),
                  concept_only: bool = False) -> Path:
    """A toy HGR for world "v1" or "v2" (or the v2-derived model in `toy_weights`): write the world's
    prompt files (`prompts`: harmful, clean; default `DEFAULT_PROMPTS`), train the demo's or the
    thorough recipe in `rounds` rounds under `work_dir` (default: a temp folder) and copy the last
    round's weights to `output`. `concept_only`: the harmful file loses its `safe_prompt` column, so
    every harmful prompt trains toward its category's concept target (the I2P regime: no safe
    counterparts)."""
    if toy_weights is not None and world != "v2":
        raise ValueError("toy_weights needs world 'v2' (the derived models are made from toy world v2)")
    prompts = prompts or DEFAULT_PROMPTS
    recipe = toy_recipe(thorough, toy_weights or world_weights(world), extra)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        files = write_world_prompt_files(world, work / "prompts", prompts, thorough)
        if concept_only:
            drop_safe_counterparts(files["harmful_train.csv"])
        weights = train_in_rounds(files, work, recipe, rounds)
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(output, lambda tmp: shutil.copyfile(weights, tmp))
    return output


def drop_safe_counterparts(path: Path) -> None:
    """Rewrite a harmful prompt CSV without its `safe_prompt` column (the concept-only regime)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "safe_prompt" not in rows[0]:
        raise ValueError(f"{Path(path).name} has no safe_prompt column to drop")
    columns = [c for c in rows[0] if c != "safe_prompt"]

    def write(f):
        out = csv.DictWriter(f, columns, extrasaction="ignore")
        out.writeheader()
        out.writerows(rows)

    write_text_file(path, write)
