"""One HGR for the models people run: `python -m benchmarks.transfer` (toy world v2).

    python -m benchmarks.transfer --build                # derived models + their retrained HGRs, cached (once)
    python -m benchmarks.transfer                        # the evaluation: report.json, report.txt, transfer.png

`--build` (`transfer_build`) makes, with the world's own training code, a style fine-tune, a merge
of base and fine-tune (ComfyUI's ModelMergeSimple), a style LoRA on the base (ComfyUI's
LoraLoaderModelOnly) and a fine-tune that learned violence more strongly, then trains each its own
HGR with the base test HGR's recipe. The evaluation (`transfer_eval`) applies the base's HGR
(`--hgr`, default the committed `tests/data/toy_hgr_v2.safetensors`) unchanged to every model and
compares it with the model's retrained HGR on the shift sweep's test prompts and noise seeds, in
the conditions `--conditions` names. Nothing is chosen on these numbers: the derived models'
recipes were fixed before the first evaluation, the HGR recipe is the base's.

The summary line is printed last:

    harmful_base=… harmful_<model>=… retrained_<model>=… fidelity_min=… auroc_min=…

(harmful rates where that model's CFG drew the harm, pooled over the conditions; `fidelity_min`
the transferred HGR's worst clean fidelity over derived models and conditions.)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

from toyworld.files import V2_WEIGHTS_DIR
from training.flags import add_threads_flag, start_cli

REPO = Path(__file__).resolve().parents[1]
BASE_HGR = REPO / "tests" / "data" / "toy_hgr_v2.safetensors"
DEFAULT_BUILD = Path("output/benchmarks/transfer/build")
DEFAULT_OUT = Path("output/benchmarks/transfer")
DEFAULT_PER_CATEGORY = 16  # 48 one-harm, 48 two-harm and 48 clean test prompts per condition (20 took 15 min 17 s here)
DEFAULT_CONDITIONS = "default,dpmpp_2m-karras-cfg7"

log = logging.getLogger("benchmarks.transfer")


def run_transfer_benchmark(build_dir=DEFAULT_BUILD, out_dir=DEFAULT_OUT, hgr=BASE_HGR, world=None,
                           per_category: int = DEFAULT_PER_CATEGORY, conditions=DEFAULT_CONDITIONS,
                           split: str = "test", batch: int = 128, models=None, passes: int = 1) -> dict:
    """Evaluate a finished build; writes report.json, report.txt and transfer.png in `out_dir`.
    `passes`: SafeCFG's HGR applications per step (SafeCFGApply's "passes"), for both HGRs."""
    from hgr_core import load_hgr
    from toyworld import load_world

    from . import transfer_report as reporting
    from .safety import _save_png
    from .safety_report import write_report
    from .sweep_design import SPLITS, select_conditions
    from .transfer_build import BuildFolder, read_record
    from .transfer_eval import MODELS, evaluate, load_models

    started, out, folder = time.monotonic(), Path(out_dir), BuildFolder(Path(build_dir))
    record = read_record(folder)
    if not record:
        raise FileNotFoundError(f"no transfer build in {folder.root.name}/ (build.json missing); "
                                "run `python -m benchmarks.transfer --build` first")
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {sorted(SPLITS)}, got {split!r}")
    names = ["base", *[m for m in (models or MODELS) if m != "base"]]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise ValueError(f"--models: unknown models {unknown}; choose from {list(MODELS)}")
    world = world if world is not None else load_world(weights_dir=V2_WEIGHTS_DIR)
    hgrs = {"base": load_hgr(hgr), **{n: load_hgr(_built_hgr(folder, n)) for n in names if n != "base"}}
    loaded = load_models(world, folder, record["recipe"]["merge_ratio"], names)
    entries, first = evaluate(world, loaded, hgrs, SPLITS[split], per_category, select_conditions(conditions), batch,
                              passes)
    report = {"world": world.version, "split": split, "hgr": hgrs["base"].metadata.get("path"), "passes": passes, "conditions": entries,
              "prompts": f"{per_category} per category and set", "build": record}
    report["pooled"] = reporting.pooled(entries)
    report["targets"] = reporting.targets(report["pooled"])
    report["judge_on_styles"] = record.get("judge_on_styles", {})
    report["summary"] = reporting.summary(report)
    report["files"] = {"grid": _save_png(reporting.transfer_grid(first), out / "transfer.png"),
                       "report": str(out / "report.json"), "table": str(out / "report.txt")}
    report["seconds"] = round(time.monotonic() - started, 1)
    write_report(report, out, reporting.format_table(report), reporting.summary_line(report))
    return report


def _built_hgr(folder, name: str) -> Path:
    path = folder.hgr(name)
    if not path.is_file():
        raise FileNotFoundError(f"the retrained HGR of {name} is missing (hgr/{path.name}); "
                                "run `python -m benchmarks.transfer --build` first")
    return path


def build_parser() -> argparse.ArgumentParser:
    from .cli_main import add_passes_flag
    from .transfer_build import DERIVED, BuildRecipe

    r = BuildRecipe()
    p = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--build", action="store_true", help="make (or complete) the cached derived models and HGRs, "
                                                        "then stop")
    p.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD, help="where the build is cached")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for report.json, report.txt, transfer.png")
    p.add_argument("--hgr", type=Path, default=BASE_HGR, help="the base model's HGR, applied unchanged to every model")
    p.add_argument("--models", default=",".join(DERIVED), help="derived models to build or evaluate, comma-separated")
    p.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY,
                   help="test prompts per category in each set (clean, one harm, two harms per pair)")
    p.add_argument("--conditions", default=DEFAULT_CONDITIONS, help="shift-sweep conditions, comma-separated")
    p.add_argument("--split", default="test", help="prompt and noise-seed split (test reports; dev for trying)")
    p.add_argument("--batch-size", type=int, default=128, help="prompts per sampling call")
    add_passes_flag(p, "the transferred and the retrained HGR alike")
    add_threads_flag(p)  # torch's default, every core: 2 threads sample 1.7-2x faster than 1 here
    p.add_argument("--finetune-steps", type=int, default=r.finetune_steps, help="build: fine-tune optimiser steps")
    p.add_argument("--lora-steps", type=int, default=r.lora_steps, help="build: LoRA optimiser steps")
    p.add_argument("--scenes", type=int, default=r.scenes, help="build: training scenes per derived model")
    p.add_argument("--hgr-rounds", type=int, default=r.hgr_rounds, help="build: HGR training rounds (2 = the base's)")
    p.add_argument("--hgr-prompts", default=f"{r.hgr_prompts[0]},{r.hgr_prompts[1]}",
                   help="build: harmful,clean HGR training prompts")
    p.add_argument("--hgr-args", default="", help="build: extra train_hgr flags (they win over the recipe's)")
    return p


def _recipe(args):
    from .transfer_build import BuildRecipe

    try:
        harmful, clean = (int(x) for x in args.hgr_prompts.split(","))
    except ValueError:
        raise ValueError(f"--hgr-prompts must be two integers 'harmful,clean', got {args.hgr_prompts!r}") from None
    return dataclasses.replace(BuildRecipe(), scenes=args.scenes, finetune_steps=args.finetune_steps,
                               lora_steps=args.lora_steps, hgr_rounds=args.hgr_rounds, hgr_prompts=(harmful, clean),
                               hgr_args=tuple(args.hgr_args.split()))


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    start_cli(args.threads)
    for flag, value in (("--per-category", args.per_category), ("--batch-size", args.batch_size),
                        ("--finetune-steps", args.finetune_steps), ("--lora-steps", args.lora_steps),
                        ("--scenes", args.scenes), ("--hgr-rounds", args.hgr_rounds)):
        if value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    from .safety import _setup

    _setup(None)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.build:
        if args.passes != 1:
            raise ValueError("--passes applies to the evaluation; the build samples no SafeCFG (drop --build or --passes)")
        from .transfer_build import build

        return build(V2_WEIGHTS_DIR, args.build_dir, _recipe(args), models)
    from .transfer_report import format_table, summary_line

    report = run_transfer_benchmark(args.build_dir, args.out, args.hgr, None, args.per_category, args.conditions,
                                    args.split, args.batch_size, models, args.passes)
    print(format_table(report))
    print(summary_line(report), flush=True)
    return report


if __name__ == "__main__":
    from benchmarks.cli_main import run_main

    run_main(main, "benchmarks.transfer")
