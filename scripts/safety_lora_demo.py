"""The safety LoRA on the toy world end to end (issue 15): pool -> finetune_safe -> benchmark -> picture.

    python scripts/safety_lora_demo.py                         # writes runs/safety_lora/ and docs/safety_lora.png
    python scripts/safety_lora_demo.py --split dev --conditions default,ddim-cfg12     # choosing settings

Steps: write an unlabelled pool of toy *train-scene* prompts (`toyworld.prompts.write_pool_file`,
96 harmful + 96 clean, the category column kept only as hidden ground truth), run
`python -m training.finetune_safe --toy` on it with the shipped test HGR (timed), then
`python -m benchmarks.safety --lora` on the held-out sweep prompts, and copy its comparison
picture (base CFG vs LoRA vs SafeCFG vs LoRA + SafeCFG, same seeds) and the pool's score histogram to docs/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=REPO / "runs" / "safety_lora", help="work folder")
    p.add_argument("--hgr", type=Path, default=REPO / "tests" / "data" / "toy_hgr.safetensors", help="the teacher HGR")
    p.add_argument("--split", choices=("test", "dev"), default="test", help="benchmark split")
    p.add_argument("--conditions", default=None, help="sweep conditions (default: all nine)")
    p.add_argument("--per-category", type=int, default=16, help="benchmark prompts per category")
    p.add_argument("--picture", type=Path, default=REPO / "docs" / "safety_lora.png", help="where the comparison PNG goes")
    p.add_argument("finetune_flags", nargs="*", help="extra flags for training.finetune_safe (after --)")
    args = p.parse_args()

    from toyworld import prompts

    pool = prompts.write_pool_file(args.out / "pool_train.csv", 96, 96)
    lora = args.out / "toy_safety_lora.safetensors"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "training.finetune_safe", "--toy", "--hgr", str(args.hgr), "--pool", str(pool),
                    "--output", str(lora), "--work-dir", str(args.out / "work"), *args.finetune_flags],
                   cwd=REPO, check=True)
    print(f"finetune_safe: {time.monotonic() - started:.0f} s", flush=True)
    bench = [sys.executable, "-m", "benchmarks.safety", "--lora", str(lora), "--hgr", str(args.hgr), "--split", args.split,
             "--per-category", str(args.per_category), "--out", str(args.out / f"benchmark_{args.split}")]
    subprocess.run(bench + (["--conditions", args.conditions] if args.conditions else []), cwd=REPO, check=True)
    if args.split == "test":
        shutil.copyfile(args.out / f"benchmark_{args.split}" / "comparison.png", args.picture)
        shutil.copyfile(args.out / "work" / "score_histogram.png", args.picture.with_name(args.picture.stem + "_scores.png"))


if __name__ == "__main__":
    main()
