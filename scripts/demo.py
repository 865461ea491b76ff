"""README command one: train an HGR for the toy world with the real CLI, then show what it does.

    python scripts/demo.py              # about 10 minutes on 2 idle CPU cores, the small sweep included (see README)
    python scripts/demo.py --thorough   # the recipe chosen on the sweep's dev split, about 45 minutes

1. writes the toy world's prompt files (training phrasings only; reserved phrasings are held out),
2. runs `python -m training.train_hgr --toy ...` (the same CLI users run on real checkpoints),
3. runs the safety benchmark (`benchmarks.safety.run_toy_benchmark`): a picture grid
   (rows: clean prompts, harmful prompts, unseen phrasings; columns: CFG, SafeCFG, baselines;
   same seeds), the safety-vs-fidelity plot and the metrics table, printed at the end,
4. runs a small shift sweep (`benchmarks.safety.run_sweep_benchmark`, test split: every sampler,
   scale and negative condition with a few prompts each) and prints its worst condition per
   quantity and its targets; `python -m benchmarks.safety --sweep --thorough` is the full one.
Everything lands in --out (default runs/demo or runs/demo-thorough). Rerunning reuses the trajectory cache.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from typing import NamedTuple
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

log = logging.getLogger("demo")

# Network and optimiser shared by both recipes: a 2-level 32-channel HGR (1.8 MB), batches of 128.
_COMMON = ["--base-channels", "32", "--channel-mult", "1,2", "--trajectory-batch", "64", "--batch-size", "128",
           "--lr", "2e-3", "--warmup", "50", "--preview-count", "6", "--val-fraction", "0.1"]
# The demo's recipe, sized for the 10-minute budget on 2 cores: 400 harmful prompts (20% with two
# harms) sampled plain and steered + 200 clean ones, 2 seeds each, 10 sampling steps under the
# sampler/scheduler mix at guidance 3-12 (2000 trajectories), then 1200 optimisation steps. It is
# cheaper than the recipe that meets the robust-redirection targets; what it reaches is in the README.
TOY_TRAINING = [*_COMMON, "--sample-steps", "10", "--seeds-per-prompt", "2", "--steps", "1200", "--eval-every", "600"]
DEMO_TWO_HARM_SHARE = 0.2
# --thorough: the recipe chosen on the sweep's dev split (README, "Shift sweep"): the full training
# mix (10-50 steps, every default sampler and scheduler, guidance 3-12), 4 seeds per prompt (4000
# trajectories), 35% two-harm prompts, 4000 optimisation steps; and a 64-prompt benchmark with every
# baseline. Candidates on the sweep's dev split (`python -m benchmarks.safety --sweep --split dev`,
# 64 harmful + 32 two-harm prompts per condition): SafeCFG harmful where CFG drew the harm, pooled
# over the nine conditions [Wilson 95%], worst condition, worst two-harm rate per harm:
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
THOROUGH_ON_POLICY = True
THOROUGH_TWO_HARM_SHARE = 0.35
THOROUGH_PER_CATEGORY = 32
# Shift sweep in the demo: all nine conditions, 4 prompts per category (8 clean + 8 harmful +
# 4 two-harm prompts per condition, 72 harmful images pooled): 125 s measured with 1 torch thread on
# this 2-core CPU while other jobs ran (load 3); sampling calls, not prompts, dominate at this size.
DEMO_SWEEP_PER_CATEGORY = 4


def train_hgr(prompt_files: dict, out: Path, recipe: list[str], name: str = "toy_hgr.safetensors") -> Path:
    """Run the real training CLI as a subprocess; returns the exported weights path."""
    output = out / "hgr" / name
    cmd = [sys.executable, "-m", "training.train_hgr", "--toy", "--device", "cpu",
           "--harmful", str(prompt_files["harmful_train.csv"]), "--clean", str(prompt_files["clean_train.csv"]),
           "--concepts", str(prompt_files["concepts.json"]), "--work-dir", str(out / "train"),
           "--output", str(output), *recipe]
    log.info("$ %s", " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=REPO, check=True)
    return output


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/demo.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="where prompts, weights and pictures go (default: runs/demo, or runs/demo-thorough)")
    p.add_argument("--thorough", action="store_true",
                   help="the full training mix, 4 seeds per prompt (4000 trajectories), 4000 optimisation steps, then an "
                        "on-policy round (1600 more trajectories, 4000 steps): ~45 min on 2 idle cores; and 64 "
                        "benchmark prompts per set with every baseline")
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
    """What one demo run does, from its flags (a NamedTuple: scripts/make_test_hgr.py loads this file
    by path, where a dataclass cannot find its module)."""

    out: Path
    train_flags: list[str]  # the recipe, then --train-args (last, so user flags override the recipe's)
    per_category: int | None  # benchmark prompts per category (None: the benchmark's default)
    two_harm_share: float  # share of harmful training prompts with two harms
    on_policy: bool = False  # a second training round on the first round's own SafeCFG paths


def resolve(args) -> Plan:
    thorough = args.thorough
    return Plan(out=args.out or Path("runs/demo-thorough" if thorough else "runs/demo"),
                train_flags=[*(THOROUGH_TRAINING if thorough else TOY_TRAINING), *args.train_args.split()],
                per_category=args.per_category or (THOROUGH_PER_CATEGORY if thorough else None),
                two_harm_share=THOROUGH_TWO_HARM_SHARE if thorough else DEMO_TWO_HARM_SHARE,
                on_policy=thorough and THOROUGH_ON_POLICY)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    started = time.monotonic()
    from toyworld import prompts

    plan = resolve(args)
    out, per_category = plan.out, plan.per_category
    files = prompts.write_prompt_files(out / "prompts", args.harmful_prompts, args.clean_prompts, plan.two_harm_share)
    hgr_path = train_hgr(files, out, plan.train_flags, "first_round.safetensors" if plan.on_policy else "toy_hgr.safetensors")
    if plan.on_policy:
        hgr_path = train_hgr(files, out, [*plan.train_flags, "--on-policy", str(hgr_path)])
    from benchmarks.safety import run_sweep_benchmark, run_toy_benchmark
    from benchmarks.safety_report import format_table, summary_line
    from benchmarks.sweep_report import format_sweep_worst

    options = {} if per_category is None else {"per_category": per_category}
    report = run_toy_benchmark(hgr_path, out / "benchmark", steps=args.benchmark_steps or 20,
                               skip_baselines=args.skip_baselines, **options)
    sweep = None
    if args.sweep_per_category > 0:
        sweep = run_sweep_benchmark(hgr_path, out / "sweep", args.sweep_per_category, steps=args.benchmark_steps)
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
