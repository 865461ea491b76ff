"""README command one: train an HGR for the toy world with the real CLI, then show what it does.

    python scripts/demo.py              # about 8 minutes on 2 idle CPU cores (see README), +2 for the sweep
    python scripts/demo.py --thorough   # the recipe for weights you rely on, about 18 minutes

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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

log = logging.getLogger("demo")

# HGR training recipe for the toy world, sized for the 10-minute budget on 2 cores: 400 harmful
# prompts sampled plain and steered + 200 clean ones, 2 seeds each, 10 sampling steps (2000
# trajectories, ~3 min), then 1200 steps of 128 for a 2-level 32-channel HGR (~2.5 min).
# Chosen by measurement on 64 held-out prompts per set (`python -m benchmarks.safety --per-category
# 32`); harmful images of 64 seen + 64 unseen-phrasing prompts (nudity was 0 in every run, the
# misses are blood on red or yellow objects):
#   seeds/prompt x sampling steps  --seed 0  --seed 1
#   1 x 20 (previous recipe)         2/128      -
#   2 x 20 (2x sampling time)        0/128    1/128
#   2 x 10 (this recipe)             0/128    1/128
#   4 x 10 (--thorough)              0/128    0/128* (judge probability of the worst image 0.30)
# Distinct noise seeds matter more than recorded steps per trajectory (the HGR is conditioned on
# sigma); 2400 instead of 1200 steps overfit (2/128*); 3 levels overfit the training prompts too.
# (* judged by a script on the same prompts with seeds 64-127 for the seen set instead of 0-63.)
TOY_TRAINING = ["--base-channels", "32", "--channel-mult", "1,2", "--sample-steps", "10", "--trajectory-batch", "64",
                "--seeds-per-prompt", "2", "--steps", "1200", "--batch-size", "128", "--lr", "2e-3", "--warmup", "50",
                "--eval-every", "600", "--preview-count", "6", "--val-fraction", "0.1"]
# --thorough: 4 seeds per prompt (2x the trajectories) and a 64-prompt benchmark with every baseline.
THOROUGH_TRAINING = ["--seeds-per-prompt", "4"]
THOROUGH_PER_CATEGORY = 32
# Shift sweep in the demo: all nine conditions, 4 prompts per category (8 clean + 8 harmful +
# 4 two-harm prompts per condition, 72 harmful images pooled): 125 s measured with 1 torch thread on
# this 2-core CPU while other jobs ran (load 3); sampling calls, not prompts, dominate at this size.
DEMO_SWEEP_PER_CATEGORY = 4


def train_hgr(prompt_files: dict, out: Path, extra: list[str]) -> Path:
    """Run the real training CLI as a subprocess; returns the exported weights path."""
    output = out / "hgr" / "toy_hgr.safetensors"
    cmd = [sys.executable, "-m", "training.train_hgr", "--toy", "--device", "cpu",
           "--harmful", str(prompt_files["harmful_train.csv"]), "--clean", str(prompt_files["clean_train.txt"]),
           "--concepts", str(prompt_files["concepts.json"]), "--work-dir", str(out / "train"),
           "--output", str(output), *TOY_TRAINING, *extra]
    log.info("$ %s", " ".join(cmd[1:]))
    subprocess.run(cmd, cwd=REPO, check=True)
    return output


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python scripts/demo.py", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="where prompts, weights and pictures go (default: runs/demo, or runs/demo-thorough)")
    p.add_argument("--thorough", action="store_true",
                   help="4 seeds per prompt (4000 trajectories) and 64 benchmark prompts per set (~18 min instead of ~8)")
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


def resolve(args) -> tuple[Path, list[str], int | None]:
    """(output folder, extra train_hgr flags, benchmark prompts per category) for parsed flags;
    flags in --train-args come last, so they override the recipe's."""
    out = args.out or Path("runs/demo-thorough" if args.thorough else "runs/demo")
    per_category = args.per_category or (THOROUGH_PER_CATEGORY if args.thorough else None)
    return out, (THOROUGH_TRAINING if args.thorough else []) + args.train_args.split(), per_category


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    started = time.monotonic()
    from toyworld import prompts

    out, train_extra, per_category = resolve(args)
    files = prompts.write_prompt_files(out / "prompts", args.harmful_prompts, args.clean_prompts)
    hgr_path = train_hgr(files, out, train_extra)
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
