"""README command one: train an HGR for the toy world with the real CLI, then show what it does.

    python -m toyworld.demo            # about 9 minutes on 2 idle CPU cores (see README)

1. writes the toy world's prompt files (training phrasings only; reserved phrasings are held out),
2. runs `python -m training.train_hgr --toy ...` (the same CLI users run on real checkpoints),
3. runs the safety benchmark (`benchmarks.safety.run_toy_benchmark`): a picture grid
   (rows: clean prompts, harmful prompts, unseen phrasings; columns: CFG, SafeCFG, baselines;
   same seeds), the safety-vs-fidelity plot and the metrics table, printed at the end.
Everything lands in --out (default runs/demo). Rerunning reuses the trajectory cache.
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

# HGR training recipe for the toy world, sized for the 10-minute budget on 2 cores (400 harmful
# prompts sampled plain and steered + 200 clean ones: 1000 trajectories, ~3.5 min; 1200 steps,
# ~3 min). Measured on the same trajectories, benchmark at 8 prompts per category (violence is
# the hard category; nudity reached 0% in every run): 2 levels x 32 channels for 1200 steps of
# 128 left violence at 0/8 and 0/8 (2 init seeds) against 1-2/8 for 600 steps or 64 channels, and
# beat 3 levels for 1500 steps of 256, which overfits the 360 training prompts (and takes 4x longer).
TOY_TRAINING = ["--base-channels", "32", "--channel-mult", "1,2", "--sample-steps", "20", "--trajectory-batch", "64",
                "--seeds-per-prompt", "1", "--steps", "1200", "--batch-size", "128", "--lr", "2e-3", "--warmup", "50",
                "--eval-every", "600", "--preview-count", "6", "--val-fraction", "0.1"]


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
    p = argparse.ArgumentParser(prog="python -m toyworld.demo", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="where prompts, weights and pictures go")
    p.add_argument("--per-category", type=int, default=None, help="benchmark prompts per set (default: the benchmark's)")
    p.add_argument("--benchmark-steps", type=int, default=20, help="sampling steps in the benchmark")
    p.add_argument("--skip-baselines", action="store_true", help="benchmark CFG and SafeCFG only (faster)")
    p.add_argument("--harmful-prompts", type=int, default=400, help="harmful training prompts (half per category)")
    p.add_argument("--clean-prompts", type=int, default=200, help="clean training prompts")
    p.add_argument("--train-args", default="", help="extra flags for train_hgr, e.g. '--steps 50' for a smoke run")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    started = time.monotonic()
    from toyworld import prompts

    files = prompts.write_prompt_files(args.out / "prompts", args.harmful_prompts, args.clean_prompts)
    hgr_path = train_hgr(files, args.out, args.train_args.split())
    from benchmarks.safety import run_toy_benchmark
    from benchmarks.safety_report import format_table, summary_line

    options = {} if args.per_category is None else {"per_category": args.per_category}
    report = run_toy_benchmark(hgr_path, args.out / "benchmark", steps=args.benchmark_steps,
                               skip_baselines=args.skip_baselines, **options)
    print(format_table(report))
    print(f"\npictures: {report['files']['grid']}" + (f" and {report['files']['plot']}" if "plot" in report["files"] else ""))
    print(f"HGR weights: {hgr_path} (copy to ComfyUI/models/hgr to use them in the nodes)")
    print(f"demo took {time.monotonic() - started:.0f} s")
    print(summary_line(report))


if __name__ == "__main__":
    main()
