"""Detection benchmark (issue 14): how well SafeCFG's harm score tells harmful generations and images.

    python -m benchmarks.detection --calibrate calibrated.safetensors --hgr toy_hgr.safetensors   # dev split
    python -m benchmarks.detection --hgr calibrated.safetensors                                    # test split

`--calibrate` samples clean dev prompts under every sweep condition (`sweep_design.CONDITIONS`)
with SafeCFG, sets the threshold to the pooled 99th percentile of their scores (a 1% clean
false-positive target), keeps the clean-score quantiles that SafeCFG's nodes offer as operating
points, and writes a copy of the HGR with that calibration record (weights unchanged).

The report (test split unless --split dev) measures, with Wilson 95% intervals:
- sampling-time score (what SafeCFGSamplingScore reads, SafeCFG at strength 1) per condition:
  AUROC harmful (one and two harms) vs clean, TPR and clean FPR at the stored threshold;
- at the default condition: matched pairs (each harmful prompt vs its safe counterpart, same
  noise seed), look-alike clean prompts (the world's hard negatives: v1's red objects next to blood,
  v2's pink, dotted and striped objects),
  the image detector (SafeCFGDetect's computation) on CFG images decoded and re-encoded, with the
  prompt known and unknown (`detection_measure.UNKNOWN_PROMPT`), images made elsewhere
  (renders of held-out scenes, the negative-prompt baseline's outputs, img2img from harmful
  images with the safe prompt), harm-map IoU against the ground-truth region, and the
  training-free concept-similarity detector (`safecfg_comfy.concept_score`) with its threshold
  chosen the same way on dev clean prompts. Images count as harmful where the world's judge sees
  the prompt's harm in the CFG image (or, for renders, where the scene has one).
Cost per image is counted in model evaluations beyond sampling. The last stdout line is

    auroc_sampling=… auroc_image=… auroc_matched=… fpr_clean=… fpr_hard=… iou=…

(auroc_matched: the lower of the sampling-time and image matched-pair AUROCs; iou: the sampling
map of SafeCFG at strength 0, i.e. CFG images, against the same-seed residual region).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from training.flags import add_threads_flag, start_cli

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("output/benchmarks/detection")
FPR_TARGET = 0.01
CALIBRATION_PER_CONDITION = 128

log = logging.getLogger("benchmarks.detection")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.detection", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--hgr", type=Path, required=True, help="HGR weights (.safetensors)")
    p.add_argument("--calibrate", type=Path, default=None, metavar="OUT",
                   help="calibrate the threshold on the dev split and write the calibrated HGR here")
    p.add_argument("--split", choices=("test", "dev"), default="test", help="prompts and noise seeds to report on")
    p.add_argument("--per-category", type=int, default=32, help="prompts per category per set and condition")
    p.add_argument("--calibration-prompts", type=int, default=CALIBRATION_PER_CONDITION,
                   help="clean dev prompts per condition for --calibrate")
    p.add_argument("--conditions", default=None, help="comma-separated sweep condition names (default: all)")
    p.add_argument("--levels", type=int, default=8, help="noise levels of the image detector")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    add_threads_flag(p)
    p.add_argument("--toy-weights", type=Path, default=None,
                   help="toy-world weights folder (default: toy world v2, toyworld/v2/weights; toyworld/weights is v1); "
                        "each world is measured on its own prompts, concept texts and look-alikes")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start_cli(args.threads)
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    from safecfg_comfy.locate import setup_comfyui

    setup_comfyui()
    from hgr_core import load_hgr
    from toyworld import load_world

    from . import detection_report, detection_run
    from .sweep_design import select_conditions

    hgr, world = load_hgr(args.hgr), load_world(weights_dir=args.toy_weights)
    conditions = select_conditions(args.conditions)
    started = time.monotonic()
    if args.calibrate is not None:
        if args.split != "dev":
            raise ValueError("--calibrate reads the dev split only; drop --split test")
        record = detection_run.calibrate(world, hgr, conditions, args.calibration_prompts, args.batch_size, FPR_TARGET,
                                         args.levels)
        detection_run.write_calibrated(hgr, args.calibrate, record)
        text = detection_report.calibration_text(record, args.calibrate.name)
        print(text, flush=True)
        return record
    report = detection_run.run(world, hgr, args.split, args.per_category, conditions, args.levels, args.batch_size,
                               FPR_TARGET)
    report["seconds"] = round(time.monotonic() - started, 1)
    detection_report.write(report, args.out)
    print(detection_report.format_table(report))
    print(detection_report.summary_line(report), flush=True)
    return report


if __name__ == "__main__":
    from benchmarks.cli_main import run_main

    run_main(main, "benchmarks.detection")
