"""README command one: train an HGR for the toy world with the real CLI, then show what it does.

    python scripts/demo.py              # toy world v2: about 9 minutes on 2 idle CPU cores (up to 13.5 on a slow day), the small sweep included (README)
    python scripts/demo.py --world v1   # the first, easier toy world: about 5 minutes
    python scripts/demo.py --thorough   # the recipe chosen on the sweep's dev split (v2: ~50 min of training)

1. writes the toy world's prompt files (training phrasings only; reserved phrasings are held out),
2. runs `python -m training.train_hgr --toy ...` (the same CLI users run on real checkpoints) in the
   recipe's rounds (`training.recipes.ROUNDS`; each later round trains on the previous HGR's own paths),
3. runs the safety benchmark (`benchmarks.safety.run_toy_benchmark`): a picture grid
   (rows: the world's test sets, e.g. clean, harmful, unseen phrasings, hard negatives, two harms;
   columns: CFG, SafeCFG, baselines; same seeds), the safety-vs-fidelity plot and the metrics table,
4. runs a small shift sweep (`benchmarks.safety.run_sweep_benchmark`, test split: every sampler,
   scale and negative condition with a few prompts each) and prints its worst condition per
   quantity and its targets; `python -m benchmarks.safety --sweep --thorough` is the full one.
Everything lands in --out (default runs/demo, runs/demo-thorough; runs/demo-v1 for v1). Rerunning reuses the trajectory cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import NamedTuple
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

from training import recipes  # noqa: E402
from training.flags import start_cli  # noqa: E402

# The training recipes (flags, the dev-split choices behind them) live in training/recipes.py.
# --thorough also runs a 64-prompt benchmark with every baseline:
THOROUGH_PER_CATEGORY = 32
# Shift sweep in the demo: all nine conditions, 4 prompts per category (8 clean + 8 harmful +
# 4 two-harm prompts per condition, 72 harmful images pooled): 125 s measured with 1 torch thread on
# this 2-core CPU while other jobs ran (load 3); sampling calls, not prompts, dominate at this size.
DEMO_SWEEP_PER_CATEGORY = 4
DEFAULT_WORLD = "v2"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/demo.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="where prompts, weights and pictures go (default: runs/demo, runs/demo-thorough; -v1 appended for v1)")
    p.add_argument("--thorough", action="store_true",
                   help="the full training mix, 4 seeds per prompt (4000 trajectories), 4000 optimisation steps, then "
                        "on-policy rounds (v1 one, v2 two; 1600 more trajectories and 4000 steps each): v1 ~45 min, "
                        "v2 ~50 min of training on 2 idle cores; and 32 benchmark prompts per category with every baseline")
    p.add_argument("--world", choices=recipes.WORLDS, default=DEFAULT_WORLD,
                   help="the toy world: v2 (harms drawn on the object, each with a clean look-alike; three "
                        "categories) or v1 (the first, easier world: overlays in colours no clean prompt uses)")
    p.add_argument("--seed", type=int, default=0, help="train_hgr --seed: training noise seeds and network initialisation")
    p.add_argument("--per-category", type=int, default=None,
                   help=f"benchmark prompts per category (default: the benchmark's, {THOROUGH_PER_CATEGORY} with --thorough)")
    p.add_argument("--benchmark-steps", type=int, default=None,
                   help="sampling steps in the benchmark (default 20) and, when given, in every sweep condition")
    p.add_argument("--sweep-per-category", type=int, default=DEMO_SWEEP_PER_CATEGORY,
                   help="shift sweep prompts per category and condition (0: no sweep)")
    p.add_argument("--skip-baselines", action="store_true", help="benchmark CFG and SafeCFG only (faster)")
    p.add_argument("--harmful-prompts", type=int, default=400, help="harmful training prompts (half per category)")
    p.add_argument("--clean-prompts", type=int, default=200, help="clean training prompts")
    p.add_argument("--train-args", default="", help="extra flags for train_hgr, e.g. '--steps 50' for a smoke run")
    return p


class Plan(NamedTuple):
    """What one demo run does, from its flags (a NamedTuple: tests load this file by path, where a
    dataclass cannot find its module)."""

    out: Path
    world: str  # "v1" or "v2"
    train_flags: list[str]  # the recipe, then --seed and --train-args (last, so user flags override the recipe's)
    per_category: int | None  # benchmark prompts per category (None: the benchmark's default)
    thorough: bool
    rounds: int  # training rounds, the later ones on the previous round's own SafeCFG paths (recipes.ROUNDS)


def resolve(args) -> Plan:
    thorough, world = args.thorough, args.world
    suffix = ("-thorough" if thorough else "") + ("-v1" if world == "v1" else "")
    return Plan(out=args.out or Path(f"runs/demo{suffix}"), world=world,
                train_flags=recipes.toy_recipe(thorough, recipes.world_weights(world),
                                               ["--seed", str(args.seed), *args.train_args.split()]),
                per_category=args.per_category or (THOROUGH_PER_CATEGORY if thorough else None),
                thorough=thorough, rounds=recipes.recipe_rounds(world, thorough))


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    start_cli()
    started = time.monotonic()
    plan = resolve(args)
    out, per_category = plan.out, plan.per_category
    files = recipes.write_world_prompt_files(plan.world, out / "prompts", (args.harmful_prompts, args.clean_prompts),
                                             plan.thorough)
    hgr_path = recipes.train_in_rounds(files, out, plan.train_flags, plan.rounds)
    from benchmarks.safety import run_sweep_benchmark, run_toy_benchmark
    from benchmarks.safety_report import format_table, summary_line
    from benchmarks.sweep_report import format_sweep_worst
    from toyworld import load_world

    world = load_world(weights_dir=recipes.world_weights(plan.world))
    options = {} if per_category is None else {"per_category": per_category}
    report = run_toy_benchmark(hgr_path, out / "benchmark", steps=args.benchmark_steps or 20,
                               skip_baselines=args.skip_baselines, world=world, **options)
    sweep = None
    if args.sweep_per_category > 0:
        sweep = run_sweep_benchmark(hgr_path, out / "sweep", args.sweep_per_category, steps=args.benchmark_steps,
                                    world=world)
    print(format_table(report))
    if sweep is not None:
        n = sweep["settings"]["prompts"]
        print(f"\nshift sweep, {len(sweep['conditions'])} conditions x ({n['clean']} clean, {n['harmful']} harmful, "
              f"{n['two_harm']} two-harm prompts), test split, {sweep['seconds']:.0f} s; full table: "
              f"{sweep['files']['table']}\n{format_sweep_worst(sweep)}\n{summary_line(sweep)}")
    print(f"\npictures: {report['files']['grid']}" + (f" and {report['files']['plot']}" if "plot" in report["files"] else ""))
    print(f"HGR weights: {hgr_path} (copy to ComfyUI/models/hgr to use them in the nodes)")
    print(f"demo took {time.monotonic() - started:.0f} s")
    print(summary_line(report))


if __name__ == "__main__":
    main()
