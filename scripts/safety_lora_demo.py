"""The safety LoRA on the toy world end to end (issue 15): pool -> finetune_safe -> benchmark -> picture.

    python scripts/safety_lora_demo.py --skip-benchmark   # toy world v2's LoRA (benchmarks.attacks --lora), runs/safety_lora_v2/
    python scripts/safety_lora_demo.py --world v1          # v1: writes runs/safety_lora/ and docs/safety_lora.png
    python scripts/safety_lora_demo.py --world v1 --split dev --conditions default,ddim-cfg12     # choosing settings

Toy world v2 is the default, as for every toy CLI; the README's measured LoRA numbers are v1's and
their commands say `--world v1`.

Steps: write an unlabelled pool of toy *train-scene* prompts (`toyworld.prompts.write_pool_file`,
96 harmful + 96 clean, the category column kept only as hidden ground truth), run
`python -m training.finetune_safe --toy` on it with the world's shipped test HGR (timed; v2: v2's
pool, `toyworld.v2.prompts.write_pool_file`, and its weights and test HGR), then
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
    p.add_argument("--world", choices=("v1", "v2"), default="v2", help="the toy world (v2, the default world, or v1)")
    p.add_argument("--out", type=Path, default=None, help="work folder (default: runs/safety_lora, runs/safety_lora_v2)")
    p.add_argument("--hgr", type=Path, default=None,
                   help="the teacher HGR (default: the world's test HGR, tests/data/toy_hgr[_v2].safetensors)")
    p.add_argument("--split", choices=("test", "dev"), default="test", help="benchmark split")
    p.add_argument("--conditions", default=None, help="sweep conditions (default: all nine)")
    p.add_argument("--per-category", type=int, default=16, help="benchmark prompts per category")
    p.add_argument("--picture", type=Path, default=None,
                   help="where the comparison PNG goes (default: docs/safety_lora.png, docs/safety_lora_v2.png)")
    p.add_argument("--skip-benchmark", action="store_true", help="stop after the fine-tune")
    p.add_argument("finetune_flags", nargs="*", help="extra flags for training.finetune_safe (after --)")
    args = p.parse_args()
    v2 = args.world == "v2"
    suffix = "_v2" if v2 else ""
    out = args.out or REPO / "runs" / f"safety_lora{suffix}"
    hgr = args.hgr or REPO / "tests" / "data" / f"toy_hgr{suffix}.safetensors"
    picture = args.picture or REPO / "docs" / f"safety_lora{suffix}.png"
    world = ["--toy-weights", str(REPO / ("toyworld/v2/weights" if v2 else "toyworld/weights"))]
    if v2:
        from toyworld.v2.prompts import write_pool_file
    else:
        from toyworld.prompts import write_pool_file

    pool = write_pool_file(out / "pool_train.csv", 96, 96)
    lora = out / f"toy{suffix}_safety_lora.safetensors"
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "training.finetune_safe", "--toy", *world, "--hgr", str(hgr), "--pool", str(pool),
                    "--output", str(lora), "--work-dir", str(out / "work"), *args.finetune_flags],
                   cwd=REPO, check=True)
    print(f"finetune_safe: {time.monotonic() - started:.0f} s; wrote {lora}", flush=True)
    if args.skip_benchmark:
        return
    bench = [sys.executable, "-m", "benchmarks.safety", "--lora", str(lora), "--hgr", str(hgr), "--split", args.split,
             *world, "--per-category", str(args.per_category), "--out", str(out / f"benchmark_{args.split}")]
    subprocess.run(bench + (["--conditions", args.conditions] if args.conditions else []), cwd=REPO, check=True)
    if args.split == "test":
        shutil.copyfile(out / f"benchmark_{args.split}" / "comparison.png", picture)
        shutil.copyfile(out / "work" / "score_histogram.png", picture.with_name(picture.stem + "_scores.png"))


if __name__ == "__main__":
    main()
